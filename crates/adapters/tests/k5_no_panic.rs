//! K5 (issue 15): no input makes detection, an adapter or a sectioner panic,
//! and every sectioner keeps the `Sectioner` contract.

use kontextual_adapters::sections::{HtmlSections, MarkdownSections, Sectioner, sectioner_for};
use kontextual_adapters::{detect, detect_prefix, for_type};
use proptest::prelude::*;

const TYPES: [&str; 6] = ["markdown", "html", "json", "text", "opaque", "other"];
const NAMES: [&str; 8] = [
    "a.html", "a.md", "a.json", "a.txt", "a", "a.gz", "a.md.gz", "a.htm",
];

const PIECES: &[&str] = &[
    "<",
    ">",
    "&",
    ";",
    "#x",
    "#",
    "&amp;",
    "&lt;",
    "&nbsp",
    "&notin;",
    "&CounterClockwiseContourIntegral;",
    "&#8315;",
    "&#x110000;",
    "⁻²ⁿ",
    "\u{a0}",
    "é",
    "\0",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<h1",
    "<h2 id=x>",
    "</h2>",
    "<h3 id='",
    "<section id=s>",
    "</section>",
    "<main>",
    "</main>",
    "<div role=main>",
    "</div>",
    "<article>",
    "<nav>",
    "</nav>",
    "<pre>",
    "\n",
    "</pre>",
    "<script>",
    "</script>",
    "<template>",
    "<svg><title>",
    "<title>",
    "<meta charset=latin1>",
    "<?xml encoding='utf-16'?>",
    "\u{feff}",
    "# ",
    "## ",
    "\n---\n",
    "```\n",
    "=\n",
    "\r\n",
    " ",
    "x",
    "\"",
    "'",
    "=",
    "/",
];

/// Strings made of the pieces that broke hand-written scanners.
fn htmlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(PIECES).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9 ]{0,8}",
        1 => "\\PC{0,4}",
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

fn check_sections(s: &dyn Sectioner, text: &str) {
    let secs = s.sections(text);
    let mut prev_start = 0;
    let mut seen = std::collections::HashSet::new();
    for sec in &secs {
        let r = sec.range.clone();
        assert!(
            r.start <= r.end && r.end <= text.len(),
            "{r:?} in {}",
            text.len()
        );
        assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
        assert!(sec.own_end >= r.start && sec.own_end <= r.end);
        assert!(text.is_char_boundary(sec.own_end));
        assert!(r.start >= prev_start, "sections in order");
        prev_start = r.start;
        assert!(seen.insert(sec.selector.clone()), "unique selectors");
        assert!((1..=6).contains(&sec.level));
        let _ = s.text_of(text, r);
        let _ = s.text_of(text, sec.own_range());
    }
    let _ = s.text_of(text, 0..text.len());
    let _ = s.text_of(text, text.len()..text.len() + 3);
}

fn exercise(bytes: &[u8]) {
    for name in NAMES {
        if let Ok((a, p)) = detect(name, bytes) {
            assert_eq!(a.artifact_type(), p.artifact_type);
            let _ = a.text(bytes);
        }
        let _ = detect_prefix(name, bytes);
    }
    for t in TYPES {
        let a = for_type(t);
        let _ = a.parse(bytes);
        let _ = a.text(bytes);
        // a fragment of HTML, as callers cut sections out of the raw bytes
        let _ = a.text(&bytes[..bytes.len() / 2]);
    }
    let text = String::from_utf8_lossy(bytes);
    for t in TYPES {
        if let Some(s) = sectioner_for(t) {
            check_sections(s, &text);
        }
    }
    check_sections(&HtmlSections, &text);
    check_sections(&MarkdownSections, &text);
    // one walk for the sections and the text gives what two walks give
    let (sections, whole) = HtmlSections.sections_and_text(&text);
    assert_eq!(sections, HtmlSections.sections(&text), "{text:?}");
    if let Some(whole) = whole {
        assert_eq!(whole, for_type("html").text(text.as_bytes()), "{text:?}");
    }
    // an HTML section starts at its heading's start tag, CRLF or not
    for sec in HtmlSections.sections(&text) {
        let at = text
            .get(sec.range.start..)
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(at.starts_with("<h"), "{:?} at {}", &text, sec.range.start);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn k5_no_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn k5_no_panic_on_arbitrary_strings(s in "\\PC{0,200}") {
        exercise(s.as_bytes());
    }

    #[test]
    fn k5_no_panic_on_htmlish_strings(s in htmlish()) {
        exercise(s.as_bytes());
        // as a gzip file of itself too
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(s.as_bytes()).unwrap();
        exercise(&e.finish().unwrap());
    }

    /// `a < b`-style text survives: every non-markup word comes out.
    #[test]
    fn k5_plain_words_survive_extraction(words in prop::collection::vec("[a-z]{1,8}", 1..20)) {
        let s = words.join(" < ");
        let text = for_type("html").text(s.as_bytes());
        prop_assert_eq!(text, s);
    }
}
