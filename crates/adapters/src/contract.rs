//! Contract suites (O5) for this crate's extension traits, [`SourceAdapter`]
//! and [`Sectioner`]: what every implementation must keep, checked on the
//! implementation's own samples and on generated input (proptest). A new
//! format runs them in its tests; the built-in formats run them in
//! `tests/o5_contract.rs`. See `docs/extension-points.md`.
//!
//! Enabled by the `contract` feature. The checks panic (they are test
//! code) with a message naming the broken rule and the input that broke it.

use std::io::Write;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::sections::{Section, Sectioner, find};
use crate::{Parsed, SourceAdapter};

/// Generated inputs per property (on top of the samples).
const CASES: u32 = 256;

/// Content an adapter is checked on.
#[derive(Clone, Copy, Debug)]
pub struct AdapterSample<'a> {
    pub bytes: &'a [u8],
    /// Whether `parse` must accept the bytes (`false`: it must refuse them).
    pub valid: bool,
    /// Words `text` must produce from the bytes (and from their gzip).
    pub words: &'a [&'a str],
}

/// A document a sectioner is checked on, with the selectors it must give,
/// in document order.
#[derive(Clone, Copy, Debug)]
pub struct SectionSample<'a> {
    pub text: &'a str,
    pub selectors: &'a [&'a str],
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `property` on generated inputs; a failure (or panic) is reported
/// with the smallest input proptest found.
fn run<S: Strategy>(what: &str, strategy: S, property: impl Fn(S::Value) -> Result<(), String>)
where
    S::Value: std::fmt::Debug,
{
    let result = runner().run(&strategy, |v| property(v).map_err(TestCaseError::fail));
    if let Err(e) = result {
        panic!("{what}: {e}");
    }
}

/// Inputs made of slices of the samples, recombined: markup cut at odd
/// places, headings out of order, a document's pieces repeated.
fn recombined(samples: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    if samples.is_empty() {
        return Just(Vec::new()).boxed();
    }
    let n = samples.len();
    prop::collection::vec((0..n, any::<usize>(), any::<usize>()), 0..12)
        .prop_map(move |cuts| {
            let mut out = Vec::new();
            for (i, a, b) in cuts {
                let s = &samples[i];
                let len = s.len() + 1;
                let (a, b) = (a % len, b % len);
                out.extend_from_slice(&s[a.min(b)..a.max(b)]);
            }
            out
        })
        .boxed()
}

/// Arbitrary bytes, arbitrary text, and recombined samples.
fn inputs(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        "\\PC{0,256}".prop_map(String::into_bytes),
        recombined(samples),
    ]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // writing into a Vec cannot fail
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What holds for any input: `parse` and `text` do not panic, are
/// deterministic, and what `parse` accepts is described consistently.
fn adapter_laws(a: &dyn SourceAdapter, bytes: &[u8]) -> Result<(), String> {
    let parsed = a.parse(bytes);
    if parsed != a.parse(bytes) {
        return Err("parse is not deterministic".into());
    }
    if let Ok(p) = &parsed {
        describes(a, p)?;
        if !crate::gzip::is_gzip(bytes) && p.content_encoding.is_some() {
            return Err(format!(
                "content encoding {:?} for bytes that are not encoded",
                p.content_encoding
            ));
        }
    }
    let text = a.text(bytes);
    if text != a.text(bytes) {
        return Err("text is not deterministic".into());
    }
    // callers cut sections out of stored bytes: any slice is readable
    for cut in [
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len().saturating_sub(1),
    ] {
        let _ = a.text(bytes.get(..cut).unwrap_or_default());
        let _ = a.text(bytes.get(cut..).unwrap_or_default());
    }
    Ok(())
}

fn describes(a: &dyn SourceAdapter, p: &Parsed) -> Result<(), String> {
    if p.artifact_type != a.artifact_type() {
        return Err(format!(
            "parse says type {:?}, the adapter is {:?}",
            p.artifact_type,
            a.artifact_type()
        ));
    }
    let m = &p.media_type;
    if !m.contains('/') || m.chars().any(char::is_control) || m.trim() != m {
        return Err(format!("{m:?} is not a media type"));
    }
    if p.title.as_deref().is_some_and(str::is_empty) {
        return Err("an empty title is no title (None)".into());
    }
    Ok(())
}

/// The [`SourceAdapter`] contract:
///
/// - `artifact_type` is a stable lowercase word (`[a-z0-9-]+`);
/// - `parse` and `text` never panic, on any bytes (and `text` on any
///   slice of them), and are deterministic;
/// - what `parse` accepts it describes as its own type, with a media type
///   and no empty title; only encoded content has a content encoding;
/// - each sample is accepted or refused as it says, and its `words` are in
///   its `text`;
/// - gzip is transparent: an accepted sample with text, gzip-compressed,
///   parses the same (with `content_encoding` `gzip`) and reads as the
///   same text ([`crate::inflated`] gives an adapter the bytes to read).
pub fn check_source_adapter(a: &dyn SourceAdapter, samples: &[AdapterSample<'_>]) {
    let t = a.artifact_type();
    assert!(is_word(t), "artifact type {t:?} is not a lowercase word");
    assert_eq!(t, a.artifact_type(), "artifact type is not stable");
    for (i, s) in samples.iter().enumerate() {
        if let Err(e) = adapter_laws(a, s.bytes) {
            panic!("{t} adapter, sample {i}: {e}");
        }
        let parsed = a.parse(s.bytes);
        assert_eq!(
            parsed.is_ok(),
            s.valid,
            "{t} adapter, sample {i}: parse gave {parsed:?}"
        );
        let text = a.text(s.bytes);
        for w in s.words {
            assert!(
                text.contains(w),
                "{t} adapter, sample {i}: {w:?} is not in its text {text:?}"
            );
        }
        if let Ok(p) = parsed
            && !text.is_empty()
            && !crate::gzip::is_gzip(s.bytes)
        {
            let gz = gzip(s.bytes);
            let q = a
                .parse(&gz)
                .unwrap_or_else(|e| panic!("{t} adapter, sample {i}: its gzip is refused: {e}"));
            assert_eq!(
                q.content_encoding,
                Some("gzip"),
                "{t} adapter, sample {i}: gzip content is not marked as such"
            );
            assert_eq!(
                Parsed {
                    content_encoding: None,
                    ..q
                },
                p,
                "{t} adapter, sample {i}: its gzip parses differently"
            );
            assert_eq!(
                a.text(&gz),
                text,
                "{t} adapter, sample {i}: its gzip reads differently"
            );
        }
    }
    let owned: Vec<Vec<u8>> = samples.iter().map(|s| s.bytes.to_vec()).collect();
    run(
        &format!("{t} adapter on generated input"),
        inputs(owned),
        |bytes| {
            adapter_laws(a, &bytes)?;
            adapter_laws(a, &gzip(&bytes))
        },
    );
}

/// What holds for the sections of any document.
fn sectioner_laws(s: &dyn Sectioner, text: &str) -> Result<Vec<Section>, String> {
    let secs = s.sections(text);
    if secs != s.sections(text) {
        return Err("sections are not deterministic".into());
    }
    if s.sections_and_text(text).0 != secs {
        return Err("sections_and_text gives other sections than sections".into());
    }
    let mut seen = std::collections::HashSet::new();
    for (i, sec) in secs.iter().enumerate() {
        let r = &sec.range;
        let at = |what: &str| format!("section {i} ({:?}): {what}", sec.selector);
        if !(r.start <= sec.own_end && sec.own_end <= r.end && r.end <= text.len()) {
            return Err(at(&format!(
                "range {r:?} / own end {} not within the {} bytes",
                sec.own_end,
                text.len()
            )));
        }
        if ![r.start, r.end, sec.own_end]
            .iter()
            .all(|&o| text.is_char_boundary(o))
        {
            return Err(at("range not on char boundaries"));
        }
        if !(1..=6).contains(&sec.level) {
            return Err(at(&format!("level {}", sec.level)));
        }
        let sel = &sec.selector;
        if sel.is_empty() || sel.split('/').any(str::is_empty) {
            return Err(at("empty selector or path segment"));
        }
        if !seen.insert(sel.clone()) {
            return Err(at("selector not unique"));
        }
        if find(&secs, sel).map(|f| &f.selector) != Ok(sel) {
            return Err(at("find does not resolve the selector to its section"));
        }
        if let Some(prev) = i.checked_sub(1).map(|p| &secs[p]) {
            if prev.range.start > r.start {
                return Err(at("not in document order"));
            }
            if prev.own_end > r.start {
                return Err(at("own text overlaps the previous section's"));
            }
        }
        for (j, outer) in secs[..i].iter().enumerate() {
            let nested = outer.range.start <= r.start && r.end <= outer.range.end;
            if !nested && r.start < outer.range.end {
                return Err(at(&format!(
                    "range {r:?} overlaps section {j} {:?} without nesting in it",
                    outer.range
                )));
            }
        }
        for range in [r.clone(), sec.own_range()] {
            if s.text_of(text, range.clone()) != s.text_of(text, range) {
                return Err(at("text_of is not deterministic"));
            }
        }
    }
    let len = text.len();
    for bad in [len + 1..len + 3, len..len + 1] {
        if !s.text_of(text, bad.clone()).is_empty() {
            return Err(format!("text_of {bad:?} out of bounds is not empty"));
        }
    }
    if let Some(mid) = (1..len).find(|&o| !text.is_char_boundary(o))
        && !s.text_of(text, mid..len).is_empty()
    {
        return Err(format!(
            "text_of {mid}..{len} off a char boundary is not empty"
        ));
    }
    let _ = s.text_of(text, 0..len);
    Ok(secs)
}

/// The [`Sectioner`] contract:
///
/// - `sections` never panics and is deterministic;
/// - sections come in document order; each range lies within the text, on
///   char boundaries, with `range.start <= own_end <= range.end`; ranges
///   nest or are disjoint, and own ranges never overlap (search indexes
///   each own range once);
/// - levels are 1–6; selectors are non-empty paths without empty
///   segments, unique, and [`find`] resolves each to its section;
/// - `text_of` never panics, is deterministic, and gives "" for a range out
///   of bounds or off a char boundary;
/// - each sample yields exactly its selectors, in order.
pub fn check_sectioner(s: &dyn Sectioner, samples: &[SectionSample<'_>]) {
    for (i, sample) in samples.iter().enumerate() {
        let secs = sectioner_laws(s, sample.text)
            .unwrap_or_else(|e| panic!("sample {i}: {e}\n{:?}", sample.text));
        let got: Vec<&str> = secs.iter().map(|s| s.selector.as_str()).collect();
        assert_eq!(got, sample.selectors, "sample {i}: selectors");
    }
    let owned: Vec<Vec<u8>> = samples.iter().map(|s| s.text.as_bytes().to_vec()).collect();
    run("sectioner on generated input", inputs(owned), |bytes| {
        sectioner_laws(s, &String::from_utf8_lossy(&bytes)).map(|_| ())
    });
}
