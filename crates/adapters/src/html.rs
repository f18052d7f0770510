//! HTML (K5): character encoding, the title, readable text and headings, on
//! a WHATWG tokenizer (`html5gum`). The tokenizer decodes every named and
//! numeric character reference as the spec says, switches into raw-text
//! states for `script`/`style` as a browser does, and never drops text on a
//! guess about where a tag ends (`a < b` is text). What the tokenizer does
//! not do — knowing which element a token is inside — is a small stack of the
//! few elements whose nesting matters here (see [`Walk`]).
//!
//! Every offset handed out (heading starts, region ends) is the position of a
//! `<`, which is ASCII, so it is a char boundary of the input `&str`.

use std::borrow::Cow;
use std::convert::Infallible;

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};
use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
use html5gum::{Emitter, ForwardingEmitter, Span, Tokenizer};

/// An emitter that reports no parse errors, so the tokenizer does not look
/// for them: its per-character check (control characters, noncharacters,
/// surrogates — errors only) was 12 % of the instructions of ingesting the
/// Rust documentation, and this crate reads text, headings and titles, never
/// the errors.
struct Quiet<E>(E);

impl<E: Emitter> ForwardingEmitter for Quiet<E> {
    type Token = E::Token;

    fn inner(&mut self) -> &mut impl Emitter<Token = Self::Token> {
        &mut self.0
    }

    fn should_emit_errors(&mut self) -> bool {
        false
    }
}

// ---------------------------------------------------------------- encoding

/// Where a document's character encoding came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Declared {
    /// A byte order mark.
    Bom,
    /// `<?xml … encoding="…"?>` at the very start (XHTML).
    XmlDeclaration,
    /// `<meta charset>` or `<meta http-equiv=Content-Type content="…; charset=…">`
    /// in the first 1024 bytes (the WHATWG prescan).
    Meta,
    /// No declaration: valid UTF-8 is taken as UTF-8, anything else as
    /// windows-1252 (the WHATWG default for documents that say nothing).
    Sniffed,
}

/// The encoding of an HTML document and how many leading bytes are its BOM.
pub(crate) fn sniff(bytes: &[u8]) -> (&'static Encoding, usize, Declared) {
    if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        return (enc, bom, Declared::Bom);
    }
    if let Some(enc) = xml_declaration(bytes) {
        return (enc, 0, Declared::XmlDeclaration);
    }
    if let Some(enc) = prescan(bytes) {
        return (enc, 0, Declared::Meta);
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => (UTF_8, 0, Declared::Sniffed),
        // a prefix cut inside a character is still UTF-8 (`error_len` None
        // means "incomplete at the end", not "invalid")
        Err(e) if e.error_len().is_none() => (UTF_8, 0, Declared::Sniffed),
        Err(_) => (WINDOWS_1252, 0, Declared::Sniffed),
    }
}

/// The document as characters: decoded by its declared or sniffed encoding,
/// malformed sequences replaced by U+FFFD (never refused here).
pub(crate) fn decode(bytes: &[u8]) -> Cow<'_, str> {
    let (enc, bom, _) = sniff(bytes);
    let body = bytes.get(bom..).unwrap_or_default();
    enc.decode_without_bom_handling(body).0
}

/// WHATWG: a `<meta>` may not switch to UTF-16 (the bytes were just read as
/// ASCII-compatible), so such a label means UTF-8; `x-user-defined` means
/// windows-1252.
fn meta_encoding(label: &[u8]) -> Option<&'static Encoding> {
    let enc = Encoding::for_label(label.trim_ascii())?;
    if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
        Some(UTF_8)
    } else if enc == encoding_rs::X_USER_DEFINED {
        Some(WINDOWS_1252)
    } else {
        Some(enc)
    }
}

/// `encoding="…"` of an XML declaration that opens the document.
fn xml_declaration(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = bytes.get(..bytes.len().min(1024))?;
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = find(head, b"?>")?;
    let decl = head.get(..end)?;
    let label = value_after(decl, b"encoding")?;
    meta_encoding(label)
}

/// The WHATWG "prescan a byte stream to determine its encoding", done by the
/// same tokenizer on the first 1024 bytes: the first `<meta>` that names a
/// supported encoding wins. Comments and script bodies are not looked into.
fn prescan(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = bytes.get(..bytes.len().min(1024))?;
    if find(head, b"meta").is_none() && find(head, b"META").is_none() {
        // cheap exit for the common "nothing declared" case; mixed-case
        // spellings (`Meta`) fall through to the tokenizer below
        if !head.windows(4).any(|w| w.eq_ignore_ascii_case(b"meta")) {
            return None;
        }
    }
    #[derive(Default)]
    struct Meta {
        in_meta: bool,
        attr: Vec<u8>,
        charset: Option<Vec<u8>>,
        http_equiv: Option<Vec<u8>>,
        content: Option<Vec<u8>>,
        found: Option<&'static Encoding>,
    }
    let mut m = Meta::default();
    let mut emitter =
        CallbackEmitter::new(|ev: CallbackEvent<'_>, _: Span<()>| -> Option<Infallible> {
            if m.found.is_some() {
                return None;
            }
            match ev {
                CallbackEvent::OpenStartTag { name } => {
                    m.in_meta = name == b"meta";
                    m.attr.clear();
                    m.charset = None;
                    m.http_equiv = None;
                    m.content = None;
                }
                CallbackEvent::AttributeName { name } if m.in_meta => {
                    m.attr = name.to_vec();
                }
                CallbackEvent::AttributeValue { value } if m.in_meta => {
                    // the first of duplicate attributes counts
                    let slot = match m.attr.as_slice() {
                        b"charset" => &mut m.charset,
                        b"http-equiv" => &mut m.http_equiv,
                        b"content" => &mut m.content,
                        _ => return None,
                    };
                    if slot.is_none() {
                        *slot = Some(value.to_vec());
                    }
                }
                CallbackEvent::CloseStartTag { .. } if m.in_meta => {
                    m.in_meta = false;
                    if let Some(c) = &m.charset {
                        m.found = meta_encoding(c);
                    } else if m
                        .http_equiv
                        .as_deref()
                        .is_some_and(|h| h.trim_ascii().eq_ignore_ascii_case(b"content-type"))
                    {
                        m.found = m
                            .content
                            .as_deref()
                            .and_then(|c| value_after(c, b"charset"))
                            .and_then(meta_encoding);
                    }
                }
                _ => {}
            }
            None
        });
    emitter.naively_switch_states(true);
    for _ in Tokenizer::new_with_emitter(head, Quiet(emitter)) {}
    m.found
}

/// The value after `key` `=` (optionally quoted) in `hay`, ASCII
/// case-insensitively: the WHATWG "extracting a character encoding from a
/// meta element", also good for `encoding="…"` in an XML declaration.
fn value_after<'a>(hay: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    loop {
        let rest = hay.get(from..)?;
        let at = rest
            .windows(key.len())
            .position(|w| w.eq_ignore_ascii_case(key))?;
        let after = rest.get(at + key.len()..)?.trim_ascii_start();
        let Some(after) = after.strip_prefix(b"=") else {
            // "charset" not followed by '=': look for the next occurrence
            from += at + key.len();
            continue;
        };
        let after = after.trim_ascii_start();
        return match after.first() {
            Some(&q @ (b'"' | b'\'')) => {
                let inner = after.get(1..)?;
                let end = inner.iter().position(|&b| b == q)?;
                inner.get(..end)
            }
            Some(_) => {
                let end = after
                    .iter()
                    .position(|&b| b.is_ascii_whitespace() || b == b';' || b == b'?')
                    .unwrap_or(after.len());
                after.get(..end)
            }
            None => None,
        };
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- the walk

/// What one pass over a document found.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// The first `<title>` outside SVG/MathML, whitespace collapsed.
    pub title_tag: Option<String>,
    /// The first `h1` outside `nav`/`template`, whitespace collapsed.
    pub first_h1: Option<String>,
    /// Readable text of the main region (or the whole page), when asked for.
    pub text: String,
    /// Headings of the main region (or of the page), in document order.
    pub headings: Vec<Heading>,
    /// Where the main region ends (the `<` of its end tag), when one was
    /// found and closed; headings' sections do not reach past it.
    pub region_end: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Heading {
    pub level: u8,
    /// Byte offset of the `<` of `<hN`.
    pub start: usize,
    pub text: String,
    /// The heading's `id`, or its enclosing `section`'s, if any.
    pub id: Option<String>,
}

impl Page {
    pub fn title(&self) -> Option<String> {
        self.title_tag
            .clone()
            .or_else(|| self.first_h1.clone())
            .filter(|t| !t.is_empty())
    }
}

/// Elements whose content is never readable text. `script`, `style`,
/// `noscript`, `iframe`, `noembed`, `noframes` are raw text to the tokenizer,
/// `textarea` and `title` escapable raw text; their content ends at their own
/// end tag. (`title` is the title, kept apart from the body text.)
fn raw_skipped(name: &[u8]) -> bool {
    matches!(
        name,
        b"script"
            | b"style"
            | b"noscript"
            | b"iframe"
            | b"noembed"
            | b"noframes"
            | b"textarea"
            | b"title"
    )
}

/// Elements that end a line before and after them when rendered.
fn is_block(name: &[u8]) -> bool {
    matches!(
        name,
        b"address"
            | b"article"
            | b"aside"
            | b"blockquote"
            | b"body"
            | b"br"
            | b"caption"
            | b"dd"
            | b"details"
            | b"dialog"
            | b"div"
            | b"dl"
            | b"dt"
            | b"fieldset"
            | b"figcaption"
            | b"figure"
            | b"footer"
            | b"form"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"header"
            | b"hgroup"
            | b"hr"
            | b"html"
            | b"legend"
            | b"li"
            | b"main"
            | b"nav"
            | b"ol"
            | b"option"
            | b"p"
            | b"pre"
            | b"section"
            | b"summary"
            | b"table"
            | b"tbody"
            | b"td"
            | b"tfoot"
            | b"th"
            | b"thead"
            | b"tr"
            | b"ul"
            | b"listing"
            | b"xmp"
            | b"plaintext"
    )
}

/// Elements that never have content (their end tag, if any, is ignored).
fn is_void(name: &[u8]) -> bool {
    matches!(
        name,
        b"area"
            | b"base"
            | b"br"
            | b"col"
            | b"embed"
            | b"hr"
            | b"img"
            | b"input"
            | b"link"
            | b"meta"
            | b"source"
            | b"track"
            | b"wbr"
            | b"param"
            | b"keygen"
    )
}

fn heading_level(name: &[u8]) -> Option<u8> {
    match name {
        b"h1" => Some(1),
        b"h2" => Some(2),
        b"h3" => Some(3),
        b"h4" => Some(4),
        b"h5" => Some(5),
        b"h6" => Some(6),
        _ => None,
    }
}

/// What an open element on the stack means here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `<main>` or an element with `role="main"`.
    Main,
    Article,
    Section,
    Nav,
    Aside,
    Pre,
    Template,
    /// `svg` / `math`: their `title` is a tooltip, not the page's.
    Foreign,
    /// An element tracked only so that end tags pair up (`div` when a `div`
    /// carried `role="main"`, or a sectioning element nested in one).
    Plain,
}

struct Open {
    name: Vec<u8>,
    kind: Kind,
}

/// Accumulates readable text: runs of whitespace become one space outside
/// `pre`, block boundaries become one line break, no blank lines are made
/// outside `pre`.
#[derive(Default)]
struct Out {
    s: String,
    space: bool,
}

impl Out {
    /// Appends text: outside `pre`, runs of whitespace become one space
    /// (none at the start of a line); inside, text stays as it is but for
    /// `\r`. NUL is never text (the tokenizer reports it as an error).
    /// Runs of ordinary characters are copied as slices, not one by one.
    fn text(&mut self, t: &str, pre: bool) {
        let special = |c: char| c == '\0' || if pre { c == '\r' } else { c.is_whitespace() };
        let mut rest = t;
        while !rest.is_empty() {
            let end = rest.find(special).unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            if !run.is_empty() {
                if self.space && !self.s.is_empty() && !self.s.ends_with('\n') {
                    self.s.push(' ');
                }
                self.space = false;
                self.s.push_str(run);
            }
            let mut chars = tail.chars();
            match chars.next() {
                Some(c) if !pre && c.is_whitespace() => self.space = true,
                _ => {}
            }
            rest = chars.as_str();
        }
    }

    fn line_break(&mut self) {
        self.space = false;
        if !self.s.is_empty() && !self.s.ends_with('\n') {
            self.s.push('\n');
        }
    }

    fn finish(self) -> String {
        let mut s = self.s;
        s.truncate(s.trim_end().len());
        s
    }
}

/// The state of one pass. Only elements that matter are tracked on the
/// stack; an end tag closes the innermost open element of its name and
/// everything opened inside it (as a browser's "any other end tag"), and an
/// end tag matching nothing open is ignored.
struct Walk {
    want_text: bool,
    // the start tag being read
    tag: Vec<u8>,
    tag_start: usize,
    attr: Vec<u8>,
    id: Option<String>,
    role_main: bool,
    // where we are
    stack: Vec<Open>,
    /// Names that are pushed when opened: fixed ones plus any element name
    /// that carried `role="main"`.
    tracked_extra: Vec<Vec<u8>>,
    raw: Option<Vec<u8>>,
    main: usize,
    article: usize,
    section: usize,
    nav: usize,
    aside: usize,
    pre: usize,
    template: usize,
    foreign: usize,
    /// `pre` just opened: a newline right after `<pre>` is not content.
    pre_fresh: bool,
    /// An `id` of an enclosing `section` not yet given to a heading.
    section_id: Option<String>,
    // findings
    heading: Option<Heading>,
    heading_in_main: bool,
    heading_in_article: bool,
    heading_in_nav: bool,
    headings: Vec<Found>,
    title: Option<String>,
    in_title: bool,
    title_buf: String,
    first_h1: Option<String>,
    whole: Out,
    main_out: Out,
    article_out: Out,
    mains: usize,
    articles: usize,
    main_end: Option<usize>,
    article_end: Option<usize>,
}

/// A heading, and whether it was inside a main region, an article, a nav.
type Found = (Heading, bool, bool, bool);
/// Which headings belong to the region whose text is kept.
type Pick = fn(&Found) -> bool;

/// A heading's text is capped so that an unclosed `<h1>` cannot make a
/// document-sized heading.
const MAX_HEADING: usize = 1024;

impl Walk {
    fn new(want_text: bool) -> Self {
        Walk {
            want_text,
            tag: Vec::new(),
            tag_start: 0,
            attr: Vec::new(),
            id: None,
            role_main: false,
            stack: Vec::new(),
            tracked_extra: Vec::new(),
            raw: None,
            main: 0,
            article: 0,
            section: 0,
            nav: 0,
            aside: 0,
            pre: 0,
            template: 0,
            foreign: 0,
            pre_fresh: false,
            section_id: None,
            heading: None,
            heading_in_main: false,
            heading_in_article: false,
            heading_in_nav: false,
            headings: Vec::new(),
            title: None,
            in_title: false,
            title_buf: String::new(),
            first_h1: None,
            whole: Out::default(),
            main_out: Out::default(),
            article_out: Out::default(),
            mains: 0,
            articles: 0,
            main_end: None,
            article_end: None,
        }
    }

    fn event(&mut self, ev: CallbackEvent<'_>, span: Span<usize>) {
        match ev {
            CallbackEvent::OpenStartTag { name } => {
                self.tag.clear();
                self.tag.extend_from_slice(name);
                self.tag_start = span.start;
                self.attr.clear();
                self.id = None;
                self.role_main = false;
            }
            CallbackEvent::AttributeName { name } => {
                self.attr.clear();
                self.attr.extend_from_slice(name);
            }
            CallbackEvent::AttributeValue { value } => match self.attr.as_slice() {
                b"id" if self.id.is_none() => {
                    let v = String::from_utf8_lossy(value).trim().to_owned();
                    self.id = (!v.is_empty()).then_some(v);
                }
                b"role" => {
                    self.role_main = String::from_utf8_lossy(value)
                        .split_ascii_whitespace()
                        .next()
                        .is_some_and(|r| r.eq_ignore_ascii_case("main"));
                }
                _ => {}
            },
            CallbackEvent::CloseStartTag { self_closing } => self.start_tag(self_closing),
            CallbackEvent::EndTag { name } => self.end_tag(name, span.start),
            CallbackEvent::String { value } => self.string(&crate::lossy(value)),
            _ => {}
        }
    }

    fn start_tag(&mut self, self_closing: bool) {
        let name = std::mem::take(&mut self.tag);
        if self.raw.is_some() {
            // cannot happen (raw text has no tags), but never trust that
            self.tag = name;
            return;
        }
        if raw_skipped(&name) {
            if name == b"title" && self.foreign == 0 && self.title.is_none() {
                self.in_title = true;
                self.title_buf.clear();
            }
            self.raw = Some(name);
            return;
        }
        if self.template == 0 && is_block(&name) {
            self.line_break();
        }
        if let Some(level) = heading_level(&name)
            && self.template == 0
            && self.foreign == 0
        {
            self.close_heading();
            let id = self.id.take().or_else(|| self.section_id.take());
            self.heading = Some(Heading {
                level,
                start: self.tag_start,
                text: String::new(),
                id,
            });
            self.heading_in_main = self.main > 0;
            self.heading_in_article = self.article > 0;
            self.heading_in_nav = self.nav > 0;
        }
        let void = is_void(&name) || (self_closing && self.foreign > 0);
        if void {
            self.tag = name;
            return;
        }
        let kind = if self.role_main || name == b"main" {
            if name != b"main" && !self.tracked_extra.contains(&name) {
                self.tracked_extra.push(name.clone());
            }
            Some(Kind::Main)
        } else {
            match name.as_slice() {
                b"article" => Some(Kind::Article),
                b"section" => Some(Kind::Section),
                b"nav" => Some(Kind::Nav),
                b"aside" => Some(Kind::Aside),
                b"pre" | b"listing" | b"xmp" | b"plaintext" => Some(Kind::Pre),
                b"template" => Some(Kind::Template),
                b"svg" | b"math" => Some(Kind::Foreign),
                _ if self.tracked_extra.contains(&name) => Some(Kind::Plain),
                _ => None,
            }
        };
        if let Some(kind) = kind {
            match kind {
                Kind::Main => {
                    if self.main == 0 {
                        self.mains += 1;
                    }
                    self.main += 1;
                }
                Kind::Article => {
                    if self.article == 0 {
                        self.articles += 1;
                    }
                    self.article += 1;
                }
                Kind::Section => {
                    self.section += 1;
                    if let Some(id) = self.id.take() {
                        self.section_id = Some(id);
                    }
                }
                Kind::Nav => self.nav += 1,
                Kind::Aside => self.aside += 1,
                Kind::Pre => {
                    self.pre += 1;
                    self.pre_fresh = true;
                }
                Kind::Template => self.template += 1,
                Kind::Foreign => self.foreign += 1,
                Kind::Plain => {}
            }
            self.stack.push(Open {
                name: name.clone(),
                kind,
            });
        }
        self.tag = name;
    }

    fn end_tag(&mut self, name: &[u8], at: usize) {
        if let Some(raw) = self.raw.take() {
            // the tokenizer only ends raw text at the element's own end tag
            if raw == b"title" && self.in_title {
                self.in_title = false;
                let t = collapse(&self.title_buf);
                if !t.is_empty() {
                    self.title = Some(t);
                }
            }
            return;
        }
        if heading_level(name).is_some() {
            // any heading end tag closes the open heading (as browsers do)
            self.close_heading();
        }
        if self.template == 0 && is_block(name) {
            self.line_break();
        }
        let Some(pos) = self.stack.iter().rposition(|o| o.name == name) else {
            return;
        };
        while self.stack.len() > pos {
            let Some(open) = self.stack.pop() else { break };
            match open.kind {
                Kind::Main => {
                    self.main = self.main.saturating_sub(1);
                    if self.main == 0 {
                        self.main_end = Some(at);
                    }
                }
                Kind::Article => {
                    self.article = self.article.saturating_sub(1);
                    if self.article == 0 {
                        self.article_end = Some(at);
                    }
                }
                Kind::Section => {
                    self.section = self.section.saturating_sub(1);
                    self.section_id = None;
                }
                Kind::Nav => self.nav = self.nav.saturating_sub(1),
                Kind::Aside => self.aside = self.aside.saturating_sub(1),
                Kind::Pre => self.pre = self.pre.saturating_sub(1),
                Kind::Template => self.template = self.template.saturating_sub(1),
                Kind::Foreign => self.foreign = self.foreign.saturating_sub(1),
                Kind::Plain => {}
            }
        }
    }

    fn close_heading(&mut self) {
        if let Some(mut h) = self.heading.take() {
            h.text = collapse(&h.text);
            if h.level == 1 && self.first_h1.is_none() && !self.heading_in_nav && !h.text.is_empty()
            {
                self.first_h1 = Some(h.text.clone());
            }
            self.headings.push((
                h,
                self.heading_in_main,
                self.heading_in_article,
                self.heading_in_nav,
            ));
        }
    }

    fn string(&mut self, s: &str) {
        if let Some(raw) = &self.raw {
            if raw == b"title" && self.in_title {
                self.title_buf.push_str(s);
            }
            return;
        }
        if self.template > 0 {
            return;
        }
        if let Some(h) = self.heading.as_mut() {
            let room = MAX_HEADING.saturating_sub(h.text.len());
            h.text
                .push_str(s.get(..s.floor_char_boundary(room)).unwrap_or_default());
        }
        if !self.want_text {
            return;
        }
        let pre = self.pre > 0;
        let s = if std::mem::take(&mut self.pre_fresh) && pre {
            s.strip_prefix("\r\n")
                .or_else(|| s.strip_prefix('\n'))
                .unwrap_or(s)
        } else {
            s
        };
        if self.nav > 0 {
            return; // navigation is never content
        }
        self.whole.text(s, pre);
        if self.aside > 0 {
            return; // asides are left out of a main region or article
        }
        if self.main > 0 {
            self.main_out.text(s, pre);
        }
        if self.article > 0 {
            self.article_out.text(s, pre);
        }
    }

    fn line_break(&mut self) {
        if self.want_text {
            self.whole.line_break();
            self.main_out.line_break();
            self.article_out.line_break();
        }
    }

    fn finish(mut self, len: usize) -> Page {
        self.close_heading();
        if self.in_title {
            // an unclosed <title> still names the page
            let t = collapse(&self.title_buf);
            if !t.is_empty() {
                self.title = Some(t);
            }
        }
        let (text, region_end, pick): (Out, Option<usize>, Pick) = if self.mains > 0 {
            (
                self.main_out,
                Some(if self.main > 0 {
                    len
                } else {
                    self.main_end.unwrap_or(len)
                }),
                |h| h.1,
            )
        } else if self.articles == 1 {
            (
                self.article_out,
                Some(if self.article > 0 {
                    len
                } else {
                    self.article_end.unwrap_or(len)
                }),
                |h| h.2,
            )
        } else {
            (self.whole, None, |h| !h.3)
        };
        let headings = self
            .headings
            .iter()
            .filter(|h| pick(h))
            .map(|h| h.0.clone())
            .collect();
        Page {
            title_tag: self.title,
            first_h1: self.first_h1,
            text: text.finish(),
            headings,
            region_end,
        }
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One pass over `s` (already decoded). `want_text` collects readable text.
pub(crate) fn walk(s: &str, want_text: bool) -> Page {
    walk_until(s, want_text, |_| false)
}

/// A pass over `s` that stops after the event at which `done` first holds
/// (the page is then what was seen so far).
fn walk_until(s: &str, want_text: bool, done: impl Fn(&Walk) -> bool) -> Page {
    /// Yielded by the tokenizer when the walk is done.
    struct Done;
    let mut w = Walk::new(want_text);
    let mut emitter =
        CallbackEmitter::new(|ev: CallbackEvent<'_>, span: Span<usize>| -> Option<Done> {
            w.event(ev, span);
            done(&w).then_some(Done)
        });
    emitter.naively_switch_states(true);
    // runs to the end, or until the callback yields `Done` (the tokenizer
    // reads from a string: it has no errors to yield)
    let _stopped: Option<Result<Done, Infallible>> =
        Tokenizer::new_with_emitter(s, Quiet(emitter)).next();
    w.finish(s.len())
}

/// The page's title: `<title>`, else the first `h1`. A `<title>` decides
/// it, so the walk stops there — in the head, for nearly every page —
/// rather than tokenizing the whole body (ingest reads every page's title;
/// on the Rust documentation that walk was a third of the HTML time).
pub fn title(s: &str) -> Option<String> {
    walk_until(s, false, |w| w.title.is_some()).title()
}

/// Readable text of a document or of any fragment of one.
pub fn text(s: &str) -> String {
    walk(s, true).text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k5_html_title_and_text() {
        let page = "<!doctype html><html><head><title> Deploy &amp; Run </title>\
            <style>p{color:red}</style><script>var x = '<p>';</script></head>\
            <body><h1>Deploy</h1><p>Use <b>kontextual</b>&nbsp;serve.</p><!-- hidden --><ul><li>one</li><li>two &#x2713;</li></ul></body></html>";
        assert_eq!(title(page), Some("Deploy & Run".into()));
        assert_eq!(text(page), "Deploy\nUse kontextual serve.\none\ntwo ✓");
    }

    /// The one-character-at-a-time reading `Out::text` replaced.
    fn text_by_chars(out: &mut Out, t: &str, pre: bool) {
        for c in t.chars() {
            if c == '\0' || (pre && c == '\r') {
                continue;
            }
            if !pre && c.is_whitespace() {
                out.space = true;
                continue;
            }
            if out.space && !out.s.is_empty() && !out.s.ends_with('\n') {
                out.s.push(' ');
            }
            out.space = false;
            out.s.push(c);
        }
    }

    /// K5: appending by runs gives exactly what appending character by
    /// character gave, for any pieces, in and out of `pre`, after any
    /// line break.
    #[test]
    fn k5_text_by_runs_matches_text_by_characters() {
        use proptest::prelude::*;
        let piece = "[a-z \\t\\r\\n\\u{0}\\u{a0}\\u{2003}é日🎉]{0,12}";
        proptest!(|(pieces in proptest::collection::vec((piece, any::<bool>(), any::<bool>()), 0..8))| {
            let mut fast = Out::default();
            let mut slow = Out::default();
            for (t, pre, br) in &pieces {
                if *br {
                    fast.line_break();
                    slow.line_break();
                }
                fast.text(t, *pre);
                text_by_chars(&mut slow, t, *pre);
                prop_assert_eq!(&fast.s, &slow.s);
                prop_assert_eq!(fast.space, slow.space);
            }
        });
    }

    /// K5: the title walk stops at a `<title>`, and gives what a whole walk
    /// gives — also when it has to go on to the first `h1`.
    #[test]
    fn k5_title_stops_early_and_agrees_with_a_whole_walk() {
        let pages = [
            "<html><head><title>A &amp; B</title></head><body><h1>C</h1></body></html>",
            "<title>  </title><h1>From h1</h1><title>late</title>",
            "<svg><title>tooltip</title></svg><h1>Heading</h1><title>Page</title>",
            "<body><h1>Only h1</h1><p>text",
            "<title>unclosed and <b>more",
            "<nav><h1>menu</h1></nav><main><h1>Main</h1></main>",
            "",
        ];
        for p in pages {
            assert_eq!(title(p), walk(p, false).title(), "{p:?}");
        }
        assert_eq!(title(pages[0]).as_deref(), Some("A & B"));
        assert_eq!(title(pages[1]).as_deref(), Some("late"));
        assert_eq!(title(pages[2]).as_deref(), Some("Page"));
    }

    /// K5 (issue 15): text is never lost to a guess about where a tag ends.
    #[test]
    fn k5_html_text_survives_broken_markup() {
        assert_eq!(text("a < b and more"), "a < b and more");
        assert_eq!(text("a < b and <unclosed"), "a < b and");
        assert_eq!(text("x &bogus; y &"), "x &bogus; y &");
        assert_eq!(title("<title></title>"), None);
    }
}
