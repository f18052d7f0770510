//! K5 HTML, encodings, gzip and sections on real-world-shaped input (issue 15).

use std::io::Write;

use kontextual_adapters::sections::{HtmlSections, Sectioner, find, sectioner_for};
use kontextual_adapters::{AdapterError, detect, detect_prefix, for_type};

fn html_text(s: &str) -> String {
    for_type("html").text(s.as_bytes())
}

/// The 60-byte reproduction of issue 15: an entity right before a
/// multi-byte character used to slice inside it and panic.
#[test]
fn k5_html_entities_next_to_multibyte_never_panic() {
    let bytes = b"<html><body><pre>&lt;Hd&gt;,\xc2\xa0&lt;Hn&gt;</pre></body></html>";
    assert_eq!(bytes.len(), 60);
    let (adapter, p) = detect("x.html", bytes).unwrap();
    assert_eq!(p.artifact_type, "html");
    assert_eq!(adapter.text(bytes), "<Hd>,\u{a0}<Hn>");
    assert_eq!(
        html_text("<p>x&#8315;&sup2;&#x207F;&amp;⁻²ⁿ&lt;⁻</p>"),
        "x⁻²ⁿ&⁻²ⁿ<⁻"
    );
    assert_eq!(html_text("⁻&⁻;&⁻²ⁿ;&#⁻;"), "⁻&⁻;&⁻²ⁿ;&#⁻;");
}

/// Every named reference of the spec, legacy ones without `;` too, and
/// numeric ones with the spec's replacements — by the tokenizer, not by hand.
#[test]
fn k5_html_character_references_decoded_per_spec() {
    assert_eq!(
        html_text("&CounterClockwiseContourIntegral; &NotNestedGreaterGreater; &fjlig; &zwnj;|"),
        "∳ ⪢̸ fj \u{200c}|"
    );
    assert_eq!(
        html_text("&notit; &notin; &amp &copy2024"),
        "¬it; ∉ & ©2024"
    );
    assert_eq!(
        html_text("&#0;&#x110000;&#xD800;&#128;&#x41;&#65"),
        "\u{fffd}\u{fffd}\u{fffd}€AA"
    );
    assert_eq!(html_text("x &bogus; y & z &;"), "x &bogus; y & z &;");
    // in attributes-like RCDATA (the title) too
    let (_, p) = detect("t.html", b"<title>A &mdash; B &Sigma;&#x3C3;</title>").unwrap();
    assert_eq!(p.title.as_deref(), Some("A — B Σσ"));
}

/// Text is never dropped by a guess about where a tag ends.
#[test]
fn k5_html_no_text_lost() {
    assert_eq!(html_text("a < b and more"), "a < b and more");
    assert_eq!(html_text("<p>1 <2 and 3> 2</p>"), "1 <2 and 3> 2");
    assert_eq!(html_text("if a < b && c > d;"), "if a < b && c > d;");
    // `<b && c>` is a tag to the spec (and to browsers): that is not loss
    assert_eq!(html_text("x<b && c>d"), "xd");
    assert_eq!(html_text("x</>y"), "xy");
    assert_eq!(
        html_text("<b>W</b>ord <i>and</i> <em>more</em>"),
        "Word and more"
    );
}

#[test]
fn k5_html_scripts_styles_templates_noscript_skipped() {
    let page = "<p>a</p><script>document.write('<p>no</p>')</script><style>p{}</style>\
        <template><p>tmpl</p><template>inner</template>still</template>\
        <noscript>enable js</noscript><p>b</p><!-- c --><![CDATA[ d ]]><p>e</p>";
    assert_eq!(html_text(page), "a\nb\ne");
    // an unclosed script swallows the rest, as in a browser; no panic
    assert_eq!(html_text("<p>a</p><script>x < y"), "a");
}

#[test]
fn k5_html_blocks_are_lines_and_pre_keeps_lines() {
    let page = "<h1>T</h1><div>one<br>two</div><ul><li>i1<li>i2</ul>\
        <table><tr><td>c1</td><td>c2</td></tr></table>\
        <pre>\nfn main() {\n    let x = 1;\n\n}\n</pre><p>after   many\n\n  spaces</p>";
    assert_eq!(
        html_text(page),
        "T\none\ntwo\ni1\ni2\nc1\nc2\nfn main() {\n    let x = 1;\n\n}\nafter many spaces"
    );
}

/// K5: page chrome is left out where the page says what its content is.
#[test]
fn k5_html_main_region_only() {
    // mdBook: chrome outside <main>
    let mdbook = "<html><head><title>Intro - The Book</title></head><body>\
        <nav id=sidebar><ol><li>1. Intro</li></ol></nav>\
        <div id=menu-bar><h2>Keyboard shortcuts</h2><p>Press ← or → to navigate</p>\
        <ul><li>Auto</li><li>Light</li><li>Rust</li><li>Coal</li><li>Navy</li><li>Ayu</li></ul></div>\
        <main><h1 id=intro>Intro</h1><p>Body text.</p></main>\
        <footer>Prev Next</footer></body></html>";
    assert_eq!(html_text(mdbook), "Intro\nBody text.");
    // role="main", with nested divs and an aside inside
    let role = "<header>Site</header><div role=\"main\"><div>x</div>y<aside>ad</aside>\
        <nav>toc</nav>z</div><div>after</div>";
    assert_eq!(html_text(role), "x\ny\nz");
    // a single article
    let one = "<header>Site</header><article><header><h1>Post</h1></header><p>words</p>\
        <footer>by me</footer></article><footer>c</footer>";
    assert_eq!(html_text(one), "Post\nwords\nby me");
    // two articles: no region; nav is still never content
    let two = "<nav>menu</nav><article>a</article><article>b</article><footer>f</footer>";
    assert_eq!(html_text(two), "a\nb\nf");
    // no region at all
    assert_eq!(html_text("<header>h</header><p>p</p>"), "h\np");
}

#[test]
fn k5_html_title_from_title_else_first_h1() {
    let t = |s: &str| detect("p.html", s.as_bytes()).unwrap().1.title;
    assert_eq!(
        t("<nav><h1>Menu</h1></nav><main><h1>Real <b>one</b></h1></main>"),
        Some("Real one".into())
    );
    assert_eq!(
        t("<svg><title>icon</title></svg><title>Page</title><h1>H</h1>"),
        Some("Page".into())
    );
    assert_eq!(t("<p>nothing</p>"), None);
    assert_eq!(t("<title>unclosed"), Some("unclosed".into()));
}

/// K5: the declared or sniffed charset is honoured.
#[test]
fn k5_html_encodings() {
    let latin1 =
        b"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=ISO-8859-1\">\
        <title>Caf\xe9</title></head><body><p>na\xefve \x80</p></body></html>";
    let (a, p) = detect("latin1.html", latin1).unwrap();
    assert_eq!(p.media_type, "text/html; charset=windows-1252");
    assert_eq!(p.title.as_deref(), Some("Café"));
    assert_eq!(a.text(latin1), "naïve €");

    let meta = b"<meta charset='koi8-r'><p>\xf0\xd2\xc9\xd7\xc5\xd4</p>";
    let (a, p) = detect("ru.html", meta).unwrap();
    assert_eq!(p.media_type, "text/html; charset=koi8-r");
    assert_eq!(a.text(meta), "Привет");

    let xhtml =
        b"<?xml version=\"1.0\" encoding=\"iso-8859-15\"?>\n<html><body><p>\xa4</p></body></html>";
    let (a, p) = detect("x.xhtml", xhtml).unwrap();
    assert_eq!(p.artifact_type, "html");
    assert_eq!(p.media_type, "text/html; charset=iso-8859-15");
    assert_eq!(a.text(xhtml), "€");

    // BOMs: UTF-8 and UTF-16LE
    let (a, p) = detect("b.html", "\u{feff}<title>B</title><p>ü</p>".as_bytes()).unwrap();
    assert_eq!(
        (p.title.as_deref(), p.media_type.as_str()),
        (Some("B"), "text/html; charset=utf-8")
    );
    assert_eq!(a.text("\u{feff}<p>ü</p>".as_bytes()), "ü");
    let mut utf16 = vec![0xff, 0xfe];
    for u in "<title>Wide ü</title><p>x</p>".encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let (a, p) = detect("w.html", &utf16).unwrap();
    assert_eq!(p.media_type, "text/html; charset=utf-16le");
    assert_eq!(p.title.as_deref(), Some("Wide ü"));
    assert_eq!(a.text(&utf16), "x");

    // nothing declared, not UTF-8: windows-1252 (WHATWG), not refused
    let (a, p) = detect("old.html", b"<p>caf\xe9</p>").unwrap();
    assert_eq!(p.media_type, "text/html; charset=windows-1252");
    assert_eq!(a.text(b"<p>caf\xe9</p>"), "café");
    // declared UTF-8 but not: refused, like Markdown
    assert_eq!(
        detect("bad.html", b"<meta charset=utf-8><p>caf\xe9</p>").unwrap_err(),
        AdapterError::InvalidUtf8 {
            format: "HTML",
            offset: 26
        }
    );
    // a meta utf-16 label means UTF-8 (WHATWG)
    let (_, p) = detect("m.html", "<meta charset=utf-16><p>é</p>".as_bytes()).unwrap();
    assert_eq!(p.media_type, "text/html; charset=utf-8");
    // Markdown and text without a declaration still must be UTF-8
    assert!(matches!(
        detect("a.md", b"caf\xe9").unwrap_err(),
        AdapterError::InvalidUtf8 {
            format: "markdown",
            ..
        }
    ));
    // mixed encodings in one file: declared windows-1252 with UTF-8 bytes
    // inside decodes as windows-1252 (mojibake, never a panic or a refusal)
    let mixed = "<meta charset=windows-1252><p>é</p>".as_bytes();
    assert_eq!(detect("mix.html", mixed).unwrap().0.text(mixed), "Ã©");
    // a prefix cut inside a character is still UTF-8
    let long = format!("<title>T</title><p>{}</p>", "é".repeat(100));
    let (_, p) = detect_prefix("big.html", &long.as_bytes()[..30]).unwrap();
    assert_eq!(p.media_type, "text/html; charset=utf-8");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// K5: a gzip file of text is that text; the stored bytes stay compressed.
#[test]
fn k5_gzip_of_text_is_text() {
    let md = gzip(b"# Changes\n\n* fixed things\n");
    let (a, p) = detect("CHANGES.md.gz", &md).unwrap();
    assert_eq!(
        (
            p.artifact_type,
            p.media_type.as_str(),
            p.title.as_deref(),
            p.content_encoding
        ),
        (
            "markdown",
            "text/markdown; charset=utf-8",
            Some("Changes"),
            Some("gzip")
        )
    );
    assert_eq!(a.text(&md), "# Changes\n\n* fixed things\n");
    assert_eq!(for_type("markdown").text(&md), a.text(&md));

    let html = gzip(b"<!doctype html><title>Z</title><main><p>zipped</p></main>");
    let (a, p) = detect("page.gz", &html).unwrap();
    assert_eq!(
        (p.artifact_type, p.content_encoding),
        ("html", Some("gzip"))
    );
    assert_eq!(a.text(&html), "zipped");

    let log = gzip(b"plain log line\n");
    let (_, p) = detect("changelog.Debian.gz", &log).unwrap();
    assert_eq!(
        (p.artifact_type, p.content_encoding),
        ("text", Some("gzip"))
    );
    let (_, p) = detect("data.json.GZ", &gzip(br#"{"title": "J"}"#)).unwrap();
    assert_eq!((p.artifact_type, p.title.as_deref()), ("json", Some("J")));

    // binary inside, corrupt, or gzip of gzip: opaque, kept as it is
    for bytes in [
        gzip(b"\x00\x01\x02binary"),
        md[..md.len() - 6].to_vec(),
        gzip(&md),
    ] {
        let (a, p) = detect("x.gz", &bytes).unwrap();
        assert_eq!(
            (p.artifact_type, p.media_type.as_str(), p.content_encoding),
            ("opaque", "application/gzip", None)
        );
        assert_eq!(a.text(&bytes), "");
    }
    // a prefix of a large gzip file is described from what it inflates to
    let big: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    let gz = gzip(big.as_bytes());
    let (_, p) = detect_prefix("big.txt.gz", &gz[..gz.len() / 2]).unwrap();
    assert_eq!(
        (p.artifact_type, p.content_encoding),
        ("text", Some("gzip"))
    );
}

/// A gzip bomb is refused without inflating it: output is capped.
#[test]
fn k5_gzip_bomb_is_opaque() {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b'a'; 1 << 20];
    for _ in 0..80 {
        e.write_all(&zeros).unwrap(); // 80 MiB of 'a': over every limit
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 200_000);
    let (a, p) = detect("bomb.txt.gz", &bomb).unwrap();
    assert_eq!(p.artifact_type, "opaque");
    assert_eq!(a.text(&bomb), "");
    assert_eq!(for_type("text").text(&bomb), "");
    assert!(matches!(
        for_type("text").parse(&bomb),
        Err(AdapterError::Gzip(_))
    ));
}

/// Real compressed changelogs on this machine, when there are any.
#[test]
fn k5_gzip_real_changelogs() {
    let Ok(dir) = std::fs::read_dir("/usr/share/doc") else {
        return;
    };
    let mut seen = 0;
    for entry in dir.flatten().take(400) {
        for name in ["changelog.gz", "changelog.Debian.gz"] {
            let path = entry.path().join(name);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let (a, p) = detect(&path.to_string_lossy(), &bytes).unwrap();
            if p.artifact_type == "text" {
                assert_eq!(p.content_encoding, Some("gzip"));
                assert!(!a.text(&bytes).is_empty(), "{}", path.display());
                seen += 1;
            }
        }
    }
    eprintln!("{seen} real changelogs read as text");
}

const DOC: &str = "<!doctype html><html><head><title>Guide</title></head><body>\
<nav><h2>Menu</h2></nav>\
<main>\
<h1>Guide</h1><p>intro</p>\
<h2 id=\"Install.Linux\">Installing on Linux</h2><p>apt</p>\
<section id=\"mac\"><h2>macOS &amp; more</h2><p>brew</p>\
<h3>Older</h3><p>port</p></section>\
<!-- <h2>commented</h2> --><script>document.write('<h2>scripted</h2>')</script>\
<h2>Usage</h2><pre>run ⁻²ⁿ</pre>\
</main><footer><h2>Footer</h2>© me</footer></body></html>";

/// K5: HTML sections by heading, ids as slugs, ranges into the raw markup.
#[test]
fn k5_html_sections_by_heading() {
    let s = sectioner_for("html").unwrap();
    let secs = s.sections(DOC);
    let sels: Vec<&str> = secs.iter().map(|x| x.selector.as_str()).collect();
    assert_eq!(
        sels,
        ["guide", "install-linux", "mac", "mac/older", "usage"]
    );
    assert_eq!(secs[2].heading, "macOS & more");
    assert!(DOC[secs[0].range.clone()].starts_with("<h1>Guide</h1>"));
    // each range starts at its <hN and ends at the next same-or-higher heading
    assert!(DOC[secs[2].range.clone()].starts_with("<h2>macOS"));
    assert!(DOC[secs[2].range.clone()].contains("port"));
    assert_eq!(s.text_of(DOC, secs[2].own_range()), "macOS & more\nbrew");
    assert_eq!(s.text_of(DOC, secs[3].range.clone()), "Older\nport");
    // the last section stops at the end of <main>: the footer is chrome
    assert!(DOC[secs[4].range.clone()].ends_with("</pre>"));
    assert_eq!(
        for_type("html").text(DOC[secs[4].range.clone()].as_bytes()),
        "Usage\nrun ⁻²ⁿ"
    );
    assert_eq!(find(&secs, "older").unwrap().selector, "mac/older");
    // own_end of a section with subsections is its first subsection's start
    assert_eq!(secs[2].own_end, secs[3].range.start);
    // nested sections are within their parent
    assert!(secs[3].range.end <= secs[2].range.end);
}

#[test]
fn k5_html_sections_without_main_and_edge_cases() {
    let s = HtmlSections;
    let page = "<h2>A</h2>a<h3>B</h3>b<h2>A</h2>again";
    let secs = s.sections(page);
    let sels: Vec<&str> = secs.iter().map(|x| x.selector.as_str()).collect();
    assert_eq!(sels, ["a", "a/b", "a-1"]);
    assert_eq!(secs[2].range.end, page.len());
    assert!(s.sections("<p>no headings</p>").is_empty());
    assert!(s.sections("").is_empty());
    // non-UTF-8 documents (declared otherwise and not ASCII) have no sections
    let latin = String::from_utf8_lossy(b"<meta charset=latin1><h1>Caf\xe9</h1>");
    assert!(s.sections(&latin).is_empty());
    assert_eq!(s.sections("<meta charset=latin1><h1>Cafe</h1>").len(), 1);
    // unclosed heading: capped text, still a section
    let unclosed = format!("<h1>{}", "x ".repeat(5000));
    let secs = s.sections(&unclosed);
    assert_eq!(secs.len(), 1);
    assert!(secs[0].heading.len() <= 1100);
    // Markdown keeps its default text_of: the source as it is
    let md = sectioner_for("markdown").unwrap();
    assert_eq!(md.text_of("# A\n*b*\n", 0..8), "# A\n*b*\n");
}

#[test]
fn k5_html_nasty_pages_never_panic() {
    let cases: Vec<Vec<u8>> = vec![
        b"<html><body><pre>&lt;Hd&gt;,\xc2\xa0&lt;Hn&gt;</pre></body></html>".to_vec(),
        b"<div><p><b><i>unclosed".to_vec(),
        b"<![CDATA[ x < y ]]><svg><![CDATA[ in svg ]]></svg>".to_vec(),
        b"\xef\xbb\xbf<title>bom</title>".to_vec(),
        b"<p>nul\x00byte</p>\x00".to_vec(),
        b"<p>nul\x00&#0;</p>".to_vec(),
        b"<h1 id=\"\">empty id</h1><h2 id='/'>slash</h2>".to_vec(),
        b"<main><main></main>".to_vec(),
        b"</main></h1></section></pre></template>".to_vec(),
        b"<h1><h2><h3>".to_vec(),
        b"<!-- unclosed comment <h1>x</h1>".to_vec(),
        b"<meta charset=\"".to_vec(),
        b"<?xml encoding=".to_vec(),
        b"<?xml version='1.0' encoding='bogus'?><p>x</p>".to_vec(),
        b"<meta http-equiv=content-type content='charset=\"'>".to_vec(),
        b"&#x;&#;&#xffffffffffffffffffff;&#99999999999999999999;".to_vec(),
        vec![0xff; 64],
        vec![b'<'; 1000],
        vec![b'&'; 1000],
    ];
    for c in &cases {
        for name in ["x.html", "x", "x.md", "x.gz"] {
            if let Ok((a, _)) = detect(name, c) {
                let _ = a.text(c);
            }
        }
        let t = for_type("html").text(c);
        let s = String::from_utf8_lossy(c);
        for sec in HtmlSections.sections(&s) {
            assert!(s.get(sec.range.clone()).is_some());
            let _ = HtmlSections.text_of(&s, sec.range);
        }
        drop(t);
    }
    assert_eq!(for_type("html").text(b"<p>nul\x00byte</p>"), "nulbyte");
}

/// A 1 MB single line of markup is linear work, not quadratic.
#[test]
fn k5_html_one_megabyte_single_line() {
    let mut line = String::from("<html><body><main>");
    while line.len() < 1 << 20 {
        line.push_str("<span class=\"x\">a&amp;b ⁻²ⁿ</span><h2 id=\"s\">S</h2>");
    }
    let t = std::time::Instant::now();
    let text = html_text(&line);
    let secs = HtmlSections.sections(&line);
    assert!(text.len() > 100_000);
    assert!(secs.len() > 10_000);
    assert!(secs.windows(2).all(|w| w[0].range.end <= w[1].range.start));
    assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
}
