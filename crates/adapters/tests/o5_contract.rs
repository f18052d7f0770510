//! O5 (issue 19): every registered format's adapter and sectioner passes
//! its contract suite (`kontextual_adapters::contract`), and so do two
//! small formats written here, outside the crate, the way a new format
//! would be.

use std::ops::Range;

use kontextual_adapters::contract::{
    AdapterSample, SectionSample, check_sectioner, check_source_adapter,
};
use kontextual_adapters::sections::{HtmlSections, MarkdownSections, Section, Sectioner};
use kontextual_adapters::{
    AdapterError, FORMATS, Html, Json, Markdown, Opaque, Parsed, SourceAdapter, Text, inflated,
};

const GUIDE_MD: &str = "---\ntitle: Guide\n---\nIntro.\n\n# Guide\n\n## Install\n\nRun `apt install`.\n\n### Linux\n\napt\n\n```\n# not a heading\n```\n\n## Usage\n\nSetext\n------\n\nwords\n";
const PAGE_HTML: &str = "<!DOCTYPE html><html><head><title>Vec &amp; friends</title></head><body><nav><h2>Menu</h2></nav><main><h1 id=vec>Vec</h1><p>A growable array.</p><h2 id=method.push>push</h2><p>Appends &lt;T&gt;.</p><h2>Pop it</h2><p>Removes.</p></main><footer><h2>Footer</h2></footer></body></html>";

fn md_samples() -> Vec<AdapterSample<'static>> {
    vec![
        AdapterSample {
            bytes: GUIDE_MD.as_bytes(),
            valid: true,
            words: &["Intro.", "apt install"],
        },
        AdapterSample {
            bytes: b"",
            valid: true,
            words: &[],
        },
        AdapterSample {
            bytes: b"# bad \xff\xfe utf-8",
            valid: false,
            words: &[],
        },
    ]
}

fn html_samples() -> Vec<AdapterSample<'static>> {
    vec![
        AdapterSample {
            bytes: PAGE_HTML.as_bytes(),
            valid: true,
            words: &["A growable array.", "Appends <T>."],
        },
        AdapterSample {
            // windows-1252 when nothing is declared and it is not UTF-8
            bytes: b"<p>caf\xe9</p>",
            valid: true,
            words: &["caf\u{e9}"],
        },
        AdapterSample {
            bytes: b"<meta charset=utf-8><p>\xff</p>",
            valid: false,
            words: &[],
        },
    ]
}

fn json_samples() -> Vec<AdapterSample<'static>> {
    vec![
        AdapterSample {
            bytes: br#"{"title": "Config", "retries": 3}"#,
            valid: true,
            words: &["retries"],
        },
        AdapterSample {
            bytes: b"{nope",
            valid: false,
            words: &[],
        },
    ]
}

fn text_samples() -> Vec<AdapterSample<'static>> {
    vec![
        AdapterSample {
            bytes: b"plain words\nand lines",
            valid: true,
            words: &["plain words"],
        },
        AdapterSample {
            bytes: b"\xc3\x28",
            valid: false,
            words: &[],
        },
    ]
}

/// The samples of a registered format, by artifact type.
fn samples_of(artifact_type: &str) -> Vec<AdapterSample<'static>> {
    match artifact_type {
        "markdown" => md_samples(),
        "html" => html_samples(),
        "json" => json_samples(),
        "text" => text_samples(),
        other => panic!("format {other} is registered but has no samples in this test"),
    }
}

#[test]
fn o5_contract_markdown_adapter() {
    check_source_adapter(&Markdown, &md_samples());
}

#[test]
fn o5_contract_html_adapter() {
    check_source_adapter(&Html, &html_samples());
}

#[test]
fn o5_contract_json_adapter() {
    check_source_adapter(&Json, &json_samples());
}

#[test]
fn o5_contract_text_adapter() {
    check_source_adapter(&Text, &text_samples());
}

#[test]
fn o5_contract_opaque_adapter() {
    check_source_adapter(
        &Opaque("application/pdf"),
        &[AdapterSample {
            bytes: b"%PDF-1.7 whatever",
            valid: true,
            words: &[],
        }],
    );
}

/// gzip is not an adapter of its own: every text format reads its gzip
/// (`inflated`); the gzip half of each suite checks it. Here: a gzip of
/// HTML is described and read as HTML, and a corrupt one is refused.
#[test]
fn o5_contract_gzip_is_transparent() {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(PAGE_HTML.as_bytes()).unwrap();
    let gz = e.finish().unwrap();
    check_source_adapter(
        &Html,
        &[
            AdapterSample {
                bytes: &gz,
                valid: true,
                words: &["A growable array."],
            },
            AdapterSample {
                bytes: &gz[..gz.len() / 2],
                valid: false,
                words: &[],
            },
        ],
    );
    assert_eq!(Html.parse(&gz).unwrap().content_encoding, Some("gzip"));
}

#[test]
fn o5_contract_markdown_sectioner() {
    check_sectioner(
        &MarkdownSections,
        &[
            SectionSample {
                text: GUIDE_MD,
                selectors: &["guide", "install", "install/linux", "usage", "setext"],
            },
            SectionSample {
                text: "no headings\n",
                selectors: &[],
            },
            SectionSample {
                text: "# A\n# A\n## b\n# a-1\n",
                selectors: &["a", "a-1", "a-1/b", "a-1-1"],
            },
        ],
    );
}

#[test]
fn o5_contract_html_sectioner() {
    check_sectioner(
        &HtmlSections,
        &[
            SectionSample {
                text: PAGE_HTML,
                selectors: &["vec", "method-push", "pop-it"],
            },
            SectionSample {
                text: "<h1>A</h1><h2>B</h2><!-- <h2>no</h2> --><script><h2>no</h2></script><h3>C</h3>",
                selectors: &["a", "b", "b/c"],
            },
        ],
    );
}

/// Every format in the registry passes both suites: a new row in
/// `FORMATS` is checked here once it has samples.
#[test]
fn o5_contract_every_registered_format() {
    assert!(!FORMATS.is_empty());
    for f in FORMATS {
        let t = f.adapter.artifact_type();
        check_source_adapter(f.adapter, &samples_of(t));
        assert!(
            kontextual_adapters::has_text(t),
            "{t}: a registered format has text"
        );
        if let Some(s) = f.sectioner {
            check_sectioner(s, &[]);
        }
    }
}

// ---- a new format, written outside the crate ----

/// Comma-separated values: UTF-8 (gzip too, through `inflated`), text with
/// the separators as spaces, the header row as its title.
#[derive(Debug)]
struct Csv;

impl SourceAdapter for Csv {
    fn artifact_type(&self) -> &'static str {
        "csv"
    }

    fn parse(&self, bytes: &[u8]) -> Result<Parsed, AdapterError> {
        let (bytes, content_encoding) = inflated(bytes)?;
        let s = std::str::from_utf8(&bytes).map_err(|e| AdapterError::InvalidUtf8 {
            format: "CSV",
            offset: e.valid_up_to(),
        })?;
        Ok(Parsed {
            artifact_type: "csv",
            media_type: "text/csv; charset=utf-8".to_owned(),
            title: s
                .lines()
                .next()
                .map(|h| h.replace(',', " ").trim().to_owned())
                .filter(|h| !h.is_empty()),
            content_encoding,
        })
    }

    fn text(&self, bytes: &[u8]) -> String {
        let bytes = inflated(bytes).map_or(Vec::new(), |(b, _)| b.into_owned());
        String::from_utf8_lossy(&bytes).replace(',', " ")
    }
}

/// AsciiDoc-style sections: a line `== Title` opens a level-2 section
/// (`=` level 1 … `======` level 6); selectors are flat slugs made unique
/// with a counter.
struct EqualsSections;

impl Sectioner for EqualsSections {
    fn sections(&self, text: &str) -> Vec<Section> {
        let mut heads: Vec<(usize, u8, String)> = Vec::new();
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            let level = line.bytes().take_while(|&b| b == b'=').count();
            if (1..=6).contains(&level) && line.as_bytes().get(level) == Some(&b' ') {
                heads.push((at, level as u8, line[level..].trim().to_owned()));
            }
            at += line.len();
        }
        let mut out: Vec<Section> = Vec::new();
        for (i, (start, level, heading)) in heads.iter().enumerate() {
            let own_end = heads.get(i + 1).map_or(text.len(), |h| h.0);
            let end = heads[i + 1..]
                .iter()
                .find(|h| h.1 <= *level)
                .map_or(text.len(), |h| h.0);
            let base = kontextual_adapters::sections::slug(heading);
            let mut selector = base.clone();
            let mut n = 1;
            while out.iter().any(|s| s.selector == selector) {
                selector = format!("{base}-{n}");
                n += 1;
            }
            out.push(Section {
                selector,
                heading: heading.clone(),
                level: *level,
                range: *start..end,
                own_end,
            });
        }
        out
    }

    fn text_of(&self, document: &str, range: Range<usize>) -> String {
        document
            .get(range)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_start_matches('=').trim_start())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn o5_contract_example_adapter() {
    check_source_adapter(
        &Csv,
        &[
            AdapterSample {
                bytes: b"name,size\nalpha,3\n",
                valid: true,
                words: &["alpha 3"],
            },
            AdapterSample {
                bytes: b"a,\xff",
                valid: false,
                words: &[],
            },
        ],
    );
}

#[test]
fn o5_contract_example_sectioner() {
    check_sectioner(
        &EqualsSections,
        &[SectionSample {
            text: "= Guide\nintro\n== Install\nrun\n=== Linux\napt\n== Install\nagain\n",
            selectors: &["guide", "install", "linux", "install-1"],
        }],
    );
}
