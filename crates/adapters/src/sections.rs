//! Addressable sections (K5): a document split by its headings, each part
//! named by a selector — the path of heading slugs from the top, e.g.
//! `installation/linux` for `## Linux` under `# Installation`.
//!
//! Formats add their own selectors by implementing [`Sectioner`]; the store
//! never sees any of this, it is recomputed from the bytes whenever needed.
//! Ranges always index the document as given (for HTML: the raw markup), so
//! a section's bytes can be cut from the stored content; what a reader or
//! the search index should see of a range is [`Sectioner::text_of`].

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// One addressable part of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Heading path of slugs joined by `/`; unique within the document.
    pub selector: String,
    /// The heading as written (inline markup removed).
    pub heading: String,
    /// Heading depth, 1 for `#`.
    pub level: u8,
    /// Byte range of the whole section: its heading through the end of its
    /// last subsection (up to the next heading of the same or a higher level).
    pub range: Range<usize>,
    /// End of the section's own text, before its first subsection. Search
    /// indexes `range.start..own_end` so nested text is not counted twice.
    pub own_end: usize,
}

impl Section {
    /// The section's own text (heading and body, without subsections).
    pub fn own_range(&self) -> Range<usize> {
        self.range.start..self.own_end
    }
}

/// Splits one format into sections. Stateless and cheap.
///
/// Contract (`contract::check_sectioner`, run for every implementation):
/// sections come in document order; every `range` lies within `text` and on
/// char boundaries; `range.start <= own_end <= range.end`; ranges nest or
/// are disjoint and own ranges never overlap; selectors are unique and
/// [`find`] resolves each; `text_of` gives "" for a range it cannot cut.
/// A format registers its sectioner in its [`crate::FORMATS`] row.
pub trait Sectioner: Send + Sync {
    /// Sections in document order. `text` is the whole document.
    fn sections(&self, text: &str) -> Vec<Section>;

    /// [`Sectioner::sections`], and — where the same pass over the document
    /// gives it — the document's whole readable text, exactly as its
    /// format's adapter extracts it from these bytes (`SourceAdapter::text`);
    /// `None` means "ask the adapter". Indexing needs both, and a markup
    /// format would otherwise parse every document twice for them.
    fn sections_and_text(&self, document: &str) -> (Vec<Section>, Option<String>) {
        (self.sections(document), None)
    }

    /// The readable text of `range` of `document` (a range or own range of
    /// one of its sections, or the preamble before the first): what search
    /// indexes and a reader is shown. By default the source as it is, which
    /// is right for Markdown; a markup format strips its markup here. A range
    /// that is out of bounds or not on char boundaries gives "".
    fn text_of(&self, document: &str, range: Range<usize>) -> String {
        document.get(range).unwrap_or_default().to_owned()
    }
}

/// The sectioner of stored content and the document text it reads, if the
/// content has sections: its format has a sectioner and the bytes are the
/// document itself (gzip-compressed text has none: its byte ranges would
/// not point into the stored bytes).
pub fn for_content(artifact_type: &str, bytes: &[u8]) -> Option<(&'static dyn Sectioner, String)> {
    let sectioner = sectioner_for(artifact_type)?;
    if crate::gzip::is_gzip(bytes) {
        return None;
    }
    Some((sectioner, crate::lossy(bytes).into_owned()))
}

/// The sectioner for an artifact type, if that format has sections.
pub fn sectioner_for(artifact_type: &str) -> Option<&'static dyn Sectioner> {
    crate::format(artifact_type)?.sectioner
}

/// Markdown (CommonMark + GFM tables): ATX and setext headings. Headings in
/// code blocks and YAML front matter are not headings.
#[derive(Debug)]
pub struct MarkdownSections;

impl Sectioner for MarkdownSections {
    fn sections(&self, text: &str) -> Vec<Section> {
        let opts = Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
            | Options::ENABLE_TABLES
            | Options::ENABLE_FOOTNOTES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_TASKLISTS
            | Options::ENABLE_HEADING_ATTRIBUTES;
        // (level, start offset, heading text, explicit slug)
        let mut headings: Vec<Heading> = Vec::new();
        let mut current: Option<Heading> = None;
        for (event, range) in Parser::new_ext(text, opts).into_offset_iter() {
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    current = Some((level_number(level), range.start, String::new(), None));
                }
                Event::End(TagEnd::Heading(_)) => {
                    if let Some(h) = current.take() {
                        headings.push(h);
                    }
                }
                Event::Text(t) | Event::Code(t) => {
                    if let Some((_, _, s, _)) = current.as_mut() {
                        s.push_str(&t);
                    }
                }
                Event::SoftBreak | Event::HardBreak => {
                    if let Some((_, _, s, _)) = current.as_mut() {
                        s.push(' ');
                    }
                }
                _ => {}
            }
        }
        build(text.len(), headings)
    }
}

/// HTML: split by `h1`–`h6` as a WHATWG tokenizer sees them (not inside
/// comments, scripts, templates or SVG). `text` is the raw markup, so ranges
/// are bytes of the stored document: a section starts at its `<hN` and ends
/// where the next heading of the same or a higher level starts.
///
/// - A heading's `id` (or, failing that, the `id` of the `section` it opens)
///   is its slug, so selectors match the page's own anchors
///   (`#method.push` → `method-push`).
/// - Where the page has a main region (`<main>`, `role="main"`, or a single
///   `<article>`), only headings inside it count and no section reaches past
///   its end, so page chrome (footers, sidebars) is in no section.
/// - `text` must be the document decoded as UTF-8 (`from_utf8_lossy` of the
///   stored bytes): HTML in another encoding has no sections (its byte
///   offsets would not be those of the stored bytes), unless it is pure
///   ASCII, where they are the same.
/// - Readable text of a range is [`Sectioner::text_of`], the HTML adapter's
///   text of that slice of markup.
#[derive(Debug)]
pub struct HtmlSections;

impl HtmlSections {
    /// The sections of `text` from one walk of it.
    fn from_page(
        text: &str,
        region_end: Option<usize>,
        headings: Vec<crate::html::Heading>,
    ) -> Vec<Section> {
        let end = region_end.unwrap_or(text.len()).min(text.len());
        let headings: Vec<Heading> = headings
            .into_iter()
            // offsets are those of `<`, so on char boundaries; checked anyway
            .filter(|h| h.start < end && text.is_char_boundary(h.start))
            .map(|h| (h.level, h.start, h.text, h.id.map(|id| slug(&id))))
            .collect();
        if !text.is_char_boundary(end) {
            return Vec::new();
        }
        build(end, headings)
    }
}

impl Sectioner for HtmlSections {
    fn sections(&self, text: &str) -> Vec<Section> {
        let (enc, _, _) = crate::html::sniff(text.as_bytes());
        if enc != encoding_rs::UTF_8 && !text.is_ascii() {
            return Vec::new();
        }
        let page = crate::html::walk(text, false);
        Self::from_page(text, page.region_end, page.headings)
    }

    /// One walk for both when the adapter would read the same characters:
    /// UTF-8 without a byte-order mark (nearly every page). Otherwise the
    /// adapter decodes by the page's encoding and the text is its to give.
    fn sections_and_text(&self, document: &str) -> (Vec<Section>, Option<String>) {
        let (enc, bom, _) = crate::html::sniff(document.as_bytes());
        if enc != encoding_rs::UTF_8 || bom != 0 {
            return (self.sections(document), None);
        }
        let page = crate::html::walk(document, true);
        let sections = Self::from_page(document, page.region_end, page.headings);
        (sections, Some(page.text))
    }

    fn text_of(&self, document: &str, range: Range<usize>) -> String {
        crate::html::text(document.get(range).unwrap_or_default())
    }
}

/// A heading found by a sectioner: level, start offset, text, and a slug the
/// document gives it (an HTML `id`), if any.
type Heading = (u8, usize, String, Option<String>);

fn level_number(l: HeadingLevel) -> u8 {
    match l {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Turns headings (in order) into sections with ranges and unique selectors.
///
/// A document title — the first heading, when no other heading is as
/// shallow — is a section of its own (`#setup`), but is left out of its
/// subsections' paths: `guide.md#installation/linux`, not
/// `guide.md#setup/installation/linux`.
fn build(len: usize, headings: Vec<Heading>) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::with_capacity(headings.len());
    let mut stack: Vec<(u8, String)> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    let title = headings
        .first()
        .filter(|first| headings[1..].iter().all(|h| h.0 > first.0))
        .is_some();
    for (i, (level, start, heading, given)) in headings.iter().enumerate() {
        while stack.last().is_some_and(|(l, _)| *l >= *level) {
            stack.pop();
        }
        let parent: Vec<&str> = stack.iter().map(|(_, s)| s.as_str()).collect();
        let base = given.clone().unwrap_or_else(|| slug(heading));
        let mut selector = join(&parent, &base);
        // the next suffix to try for this path: every smaller one is taken
        // already (and stays taken), so repeats cost O(1), not O(repeats)
        let next = next_suffix.entry(selector.clone()).or_insert(1);
        while taken.contains(&selector) {
            selector = join(&parent, &format!("{base}-{next}"));
            *next += 1;
        }
        taken.insert(selector.clone());
        let leaf = selector.rsplit('/').next().unwrap_or(&selector).to_owned();
        if !(title && i == 0) {
            stack.push((*level, leaf));
        }
        let own_end = headings.get(i + 1).map_or(len, |h| h.1);
        let end = headings[i + 1..]
            .iter()
            .find(|h| h.0 <= *level)
            .map_or(len, |h| h.1);
        out.push(Section {
            selector,
            heading: heading.trim().to_owned(),
            level: *level,
            range: *start..end,
            own_end,
        });
    }
    out
}

fn join(parent: &[&str], leaf: &str) -> String {
    if parent.is_empty() {
        leaf.to_owned()
    } else {
        format!("{}/{leaf}", parent.join("/"))
    }
}

/// A heading's slug: lowercase letters and digits, runs of anything else
/// become one `-`. `/` never survives (it separates path levels).
pub fn slug(heading: &str) -> String {
    let mut s = String::with_capacity(heading.len());
    let mut dash = false;
    for c in heading.trim().chars() {
        if c.is_alphanumeric() || c == '_' {
            if dash && !s.is_empty() {
                s.push('-');
            }
            dash = false;
            s.extend(c.to_lowercase());
        } else {
            dash = true;
        }
    }
    if s.is_empty() {
        "section".to_owned()
    } else {
        s
    }
}

/// Finds a section by selector: an exact path, else a unique path suffix
/// (`linux` finds `installation/linux` when no other section ends so).
pub fn find<'a>(sections: &'a [Section], selector: &str) -> Result<&'a Section, Vec<&'a str>> {
    let wanted = selector.trim_matches('/').to_lowercase();
    if let Some(s) = sections.iter().find(|s| s.selector == wanted) {
        return Ok(s);
    }
    let suffix = format!("/{wanted}");
    let matches: Vec<&Section> = sections
        .iter()
        .filter(|s| s.selector.ends_with(&suffix))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(Vec::new()),
        many => Err(many.iter().map(|s| s.selector.as_str()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = "---\ntitle: Guide\n---\nIntro text.\n\n# Installation\n\nGeneral.\n\n## Linux\n\napt install.\n\n```\n# not a heading\n```\n\n## macOS\n\nbrew.\n\n# Usage\n\nRun it.\n\n## Linux\n\nsame slug, other parent\n\nSetext Title\n============\n\n# Usage\n\ndup.\n";

    /// K5: headings become a path of selectors with byte ranges.
    #[test]
    fn k5_markdown_sections_have_paths_and_ranges() {
        let secs = MarkdownSections.sections(GUIDE);
        let sels: Vec<&str> = secs.iter().map(|s| s.selector.as_str()).collect();
        assert_eq!(
            sels,
            [
                "installation",
                "installation/linux",
                "installation/macos",
                "usage",
                "usage/linux",
                "setext-title",
                "usage-1"
            ]
        );
        let linux = &secs[1];
        assert_eq!(
            &GUIDE[linux.range.clone()],
            "## Linux\n\napt install.\n\n```\n# not a heading\n```\n\n"
        );
        let inst = &secs[0];
        assert!(GUIDE[inst.range.clone()].contains("brew."));
        assert_eq!(&GUIDE[inst.own_range()], "# Installation\n\nGeneral.\n\n");
        assert_eq!(secs[5].heading, "Setext Title");
        assert_eq!(secs[5].level, 1);
    }

    /// A lone top heading is the document's title: a section, not a path prefix.
    #[test]
    fn k5_title_heading_is_not_part_of_paths() {
        let doc = "# Guide\n\nintro\n\n## Installation\n\n### Linux\n\napt\n\n## Guide\n\nclash\n";
        let sels: Vec<String> = MarkdownSections
            .sections(doc)
            .into_iter()
            .map(|s| s.selector)
            .collect();
        assert_eq!(
            sels,
            ["guide", "installation", "installation/linux", "guide-1"]
        );
    }

    #[test]
    fn find_by_path_or_unique_suffix() {
        let secs = MarkdownSections.sections(GUIDE);
        assert_eq!(
            find(&secs, "installation/linux").unwrap().selector,
            "installation/linux"
        );
        assert_eq!(find(&secs, "macos").unwrap().selector, "installation/macos");
        assert_eq!(
            find(&secs, "linux").unwrap_err(),
            ["installation/linux", "usage/linux"]
        );
        assert!(find(&secs, "nope").unwrap_err().is_empty());
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Getting Started!"), "getting-started");
        assert_eq!(slug("  C++ / Rust  "), "c-rust");
        assert_eq!(slug("Überblick"), "überblick");
        assert_eq!(slug("???"), "section");
    }

    #[test]
    fn no_headings_no_sections() {
        assert!(MarkdownSections.sections("just text\n").is_empty());
        assert!(MarkdownSections.sections("").is_empty());
    }
}
