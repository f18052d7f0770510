//! Markdown titles, by the same CommonMark parser that finds sections: a
//! `title:` in YAML front matter, else the first level-1 heading (ATX `#` or
//! setext `===`), its inline markup removed. Headings inside code blocks and
//! front matter are not headings; an unclosed front matter is none.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

pub fn title(s: &str) -> Option<String> {
    let opts = Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut in_meta = false;
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(s, opts) {
        match event {
            Event::Start(Tag::MetadataBlock(_)) => in_meta = true,
            Event::End(TagEnd::MetadataBlock(_)) => in_meta = false,
            Event::Text(t) if in_meta => {
                if let Some(v) = front_matter_title(&t) {
                    return Some(v);
                }
            }
            Event::Start(Tag::Heading {
                level: HeadingLevel::H1,
                ..
            }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(HeadingLevel::H1)) => {
                let t = heading.take().map(|h| collapse(&h)).unwrap_or_default();
                if !t.is_empty() {
                    return Some(t);
                }
            }
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(h) = heading.as_mut() {
                    h.push(' ');
                }
            }
            _ => {}
        }
    }
    None
}

/// `title: …` on a line of its own in YAML front matter (quotes removed).
fn front_matter_title(meta: &str) -> Option<String> {
    meta.lines().find_map(|l| {
        let v = l.strip_prefix("title:")?;
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
        (!v.is_empty()).then(|| v.to_owned())
    })
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::title;

    #[test]
    fn k5_markdown_titles() {
        assert_eq!(title("# Hello #\nbody"), Some("Hello".into()));
        assert_eq!(title("intro\n\nSetup\n=====\n"), Some("Setup".into()));
        assert_eq!(
            title("---\ntitle: \"From front\"\n---\n# Other"),
            Some("From front".into())
        );
        assert_eq!(title("```\n# not a title\n```\n## Sub\n"), None);
        assert_eq!(title("no heading"), None);
    }

    /// K5: inline markup is not part of a title; the parser, not a line
    /// scanner, decides what a heading is.
    #[test]
    fn k5_markdown_title_inline_markup_removed() {
        assert_eq!(
            title("# The *`Vec`* type [docs](x)\n"),
            Some("The Vec type docs".into())
        );
        assert_eq!(title("> # quoted\n"), Some("quoted".into()));
        assert_eq!(title("#\n# Real\n"), Some("Real".into()));
        assert_eq!(title("text\n\n    # indented code\n"), None);
    }
}
