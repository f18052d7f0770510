//! Source adapters (K5): the "Markitect adapter" boundary. Each format's
//! parsing lives here, behind [`SourceAdapter`]; the store never parses.
//!
//! Detection looks at the bytes first and the file name second: known binary
//! signatures and NUL bytes win over any extension, a file that claims a text
//! format must really be UTF-8 (and JSON must parse), and HTML is recognised
//! by its markup even without an `.html` name.
//!
//! HTML is read by a WHATWG tokenizer in its declared or sniffed character
//! encoding (see `html.rs`). A gzip file whose content is text is detected
//! as that text format (`Parsed::content_encoding` says `gzip`); adapters'
//! `parse` and `text` take the stored, still compressed bytes.
//!
//! Formats are registered in one table, [`FORMATS`]: a format's adapter,
//! the file extensions that name it and its [`sections::Sectioner`]. A new
//! format is a row there, passing the contract suites of [`contract`]
//! (feature `contract`; see `docs/extension-points.md`).
//!
//! Invariant: no IO; every function takes bytes and returns facts.

#[cfg(feature = "contract")]
pub mod contract;
mod gzip;
mod html;
mod markdown;
pub mod sections;

use std::borrow::Cow;
use std::fmt;

/// What an adapter learned about some content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The artifact type word (`markdown`, `html`, `json`, `text`, `opaque`).
    pub artifact_type: &'static str,
    pub media_type: String,
    /// A human title (first heading, `<title>`, a JSON `title` member).
    pub title: Option<String>,
    /// How the stored bytes encode the content described here, as in HTTP's
    /// `Content-Encoding`: `Some("gzip")` for a gzip file of text, whose
    /// `artifact_type` and `media_type` are those of the decompressed text.
    pub content_encoding: Option<&'static str>,
}

/// Why content was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    #[error("invalid UTF-8 at byte {offset} in a {format} file")]
    InvalidUtf8 { format: &'static str, offset: usize },
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// gzip content that cannot be read back within the limits (corrupt, or
    /// larger than [`GZIP_MAX_INFLATED`] / too compressed to be text).
    #[error("gzip content refused: {0}")]
    Gzip(&'static str),
    /// An adapter failed on this content in a way it did not foresee (the
    /// caller caught a panic); the content is refused, nothing else.
    #[error("the format adapter failed on this content: {0}")]
    Unreadable(String),
}

pub use gzip::GZIP_MAX_INFLATED;

/// The bytes an adapter reads: gzip content decompressed (within the
/// limits, [`GZIP_MAX_INFLATED`]), anything else as it is; with the content
/// encoding undone (`Some("gzip")`). Every adapter's `parse` and `text`
/// start here, so stored gzip content reads as the text inside it.
pub fn inflated(bytes: &[u8]) -> Result<(Cow<'_, [u8]>, Option<&'static str>), AdapterError> {
    if !gzip::is_gzip(bytes) {
        return Ok((Cow::Borrowed(bytes), None));
    }
    match gzip::inflate(bytes, true) {
        Ok((inner, _)) => Ok((Cow::Owned(inner), Some("gzip"))),
        Err(why) => Err(AdapterError::Gzip(why)),
    }
}

/// Readable bytes for `text`: gzip that cannot be read has no text.
fn inflated_or_empty(bytes: &[u8]) -> Cow<'_, [u8]> {
    inflated(bytes).map_or(Cow::Borrowed(&[][..]), |(b, _)| b)
}

/// One format: validates content, describes it and extracts its readable
/// text. Implementations are cheap, stateless and thread-safe.
///
/// Contract (`contract::check_source_adapter`): `artifact_type` is a stable
/// lowercase word; `parse` and `text` never panic and are deterministic;
/// what `parse` accepts it describes as its own type; gzip content (undone
/// by [`inflated`]) parses and reads as the content inside.
pub trait SourceAdapter: Send + Sync + fmt::Debug {
    /// The artifact type this adapter produces.
    fn artifact_type(&self) -> &'static str;
    /// Validates the content and describes it.
    fn parse(&self, bytes: &[u8]) -> Result<Parsed, AdapterError>;
    /// Readable text for retrieval (markup removed). `bytes` may be the
    /// whole stored content (gzip included) or, for HTML, any slice of it
    /// such as a section's range. Never fails, never panics.
    fn text(&self, bytes: &[u8]) -> String;
}

fn utf8<'a>(format: &'static str, bytes: &'a [u8]) -> Result<&'a str, AdapterError> {
    std::str::from_utf8(bytes).map_err(|e| AdapterError::InvalidUtf8 {
        format,
        offset: e.valid_up_to(),
    })
}

fn strip_bom(s: &str) -> &str {
    s.strip_prefix('\u{feff}').unwrap_or(s)
}

#[derive(Debug)]
pub struct Markdown;
#[derive(Debug)]
pub struct Html;
#[derive(Debug)]
pub struct Json;
#[derive(Debug)]
pub struct Text;
/// Any other bytes, kept as they are; `media_type` from a known signature.
#[derive(Debug)]
pub struct Opaque(pub &'static str);

impl SourceAdapter for Markdown {
    fn artifact_type(&self) -> &'static str {
        "markdown"
    }
    fn parse(&self, bytes: &[u8]) -> Result<Parsed, AdapterError> {
        let (bytes, content_encoding) = inflated(bytes)?;
        let s = strip_bom(utf8("markdown", &bytes)?);
        Ok(Parsed {
            artifact_type: "markdown",
            media_type: "text/markdown; charset=utf-8".to_owned(),
            title: markdown::title(s),
            content_encoding,
        })
    }
    fn text(&self, bytes: &[u8]) -> String {
        lossy(&inflated_or_empty(bytes)).into_owned()
    }
}

impl SourceAdapter for Html {
    fn artifact_type(&self) -> &'static str {
        "html"
    }
    /// HTML is read in its own encoding: a BOM, else an XML declaration,
    /// else a `<meta>` charset in the first 1024 bytes; with none of these,
    /// valid UTF-8 is UTF-8 and anything else windows-1252 (the WHATWG
    /// default), so undeclared legacy pages are read, not refused. A page
    /// that *declares* UTF-8 but is not is refused as invalid UTF-8; other
    /// declared encodings decode malformed bytes to U+FFFD.
    fn parse(&self, bytes: &[u8]) -> Result<Parsed, AdapterError> {
        let (bytes, content_encoding) = inflated(bytes)?;
        let (enc, bom, declared) = html::sniff(&bytes);
        let body = bytes.get(bom..).unwrap_or_default();
        if enc == encoding_rs::UTF_8
            && declared != html::Declared::Sniffed
            && let Err(e) = std::str::from_utf8(body)
        {
            return Err(AdapterError::InvalidUtf8 {
                format: "HTML",
                offset: bom + e.valid_up_to(),
            });
        }
        let (s, _) = enc.decode_without_bom_handling(body);
        Ok(Parsed {
            artifact_type: "html",
            media_type: format!("text/html; charset={}", enc.name().to_ascii_lowercase()),
            title: html::title(&s),
            content_encoding,
        })
    }
    fn text(&self, bytes: &[u8]) -> String {
        html::text(&html::decode(&inflated_or_empty(bytes)))
    }
}

impl SourceAdapter for Json {
    fn artifact_type(&self) -> &'static str {
        "json"
    }
    fn parse(&self, bytes: &[u8]) -> Result<Parsed, AdapterError> {
        let (bytes, content_encoding) = inflated(bytes)?;
        let s = strip_bom(utf8("JSON", &bytes)?);
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|e| AdapterError::InvalidJson(e.to_string()))?;
        let title = v
            .get("title")
            .and_then(|t| t.as_str())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        Ok(Parsed {
            artifact_type: "json",
            media_type: "application/json".to_owned(),
            title,
            content_encoding,
        })
    }
    fn text(&self, bytes: &[u8]) -> String {
        lossy(&inflated_or_empty(bytes)).into_owned()
    }
}

impl SourceAdapter for Text {
    fn artifact_type(&self) -> &'static str {
        "text"
    }
    fn parse(&self, bytes: &[u8]) -> Result<Parsed, AdapterError> {
        let (bytes, content_encoding) = inflated(bytes)?;
        utf8("text", &bytes)?;
        Ok(Parsed {
            artifact_type: "text",
            media_type: "text/plain; charset=utf-8".to_owned(),
            title: None,
            content_encoding,
        })
    }
    fn text(&self, bytes: &[u8]) -> String {
        lossy(&inflated_or_empty(bytes)).into_owned()
    }
}

impl SourceAdapter for Opaque {
    fn artifact_type(&self) -> &'static str {
        "opaque"
    }
    fn parse(&self, _: &[u8]) -> Result<Parsed, AdapterError> {
        Ok(Parsed {
            artifact_type: "opaque",
            media_type: self.0.to_owned(),
            title: None,
            content_encoding: None,
        })
    }
    fn text(&self, _: &[u8]) -> String {
        String::new()
    }
}

/// Binary signatures that decide the format whatever the name says.
static SIGNATURES: &[(&[u8], Opaque)] = &[
    (b"%PDF-", Opaque("application/pdf")),
    (b"\x89PNG\r\n\x1a\n", Opaque("image/png")),
    (b"\xff\xd8\xff", Opaque("image/jpeg")),
    (b"GIF87a", Opaque("image/gif")),
    (b"GIF89a", Opaque("image/gif")),
    (b"PK\x03\x04", Opaque("application/zip")),
    (b"\x1f\x8b", Opaque("application/gzip")),
    (b"\x28\xb5\x2f\xfd", Opaque("application/zstd")),
    (b"\x7fELF", Opaque("application/x-elf")),
    (b"\0asm", Opaque("application/wasm")),
    (b"SQLite format 3\0", Opaque("application/vnd.sqlite3")),
];

fn extension(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

fn looks_like_html(head: &str) -> bool {
    let mut t = strip_bom(head).trim_start();
    // skip an XML declaration and leading comments
    loop {
        if t.starts_with("<?xml") || t.starts_with("<!--") {
            let end = if t.starts_with("<!--") {
                t.find("-->").map(|e| e + 3)
            } else {
                t.find("?>").map(|e| e + 2)
            };
            match end {
                Some(e) => t = t[e..].trim_start(),
                None => return false,
            }
        } else {
            break;
        }
    }
    let lower: String = t.chars().take(15).collect::<String>().to_ascii_lowercase();
    lower.starts_with("<!doctype html") || lower.starts_with("<html")
}

/// A registered format: its adapter, the file names that claim it, and how
/// its documents split into sections.
pub struct Format {
    pub adapter: &'static dyn SourceAdapter,
    /// Lowercase file extensions, without the dot, that name this format.
    /// A file so named must be valid in it (or it is refused), whatever its
    /// bytes look like — unless they carry a binary signature.
    pub extensions: &'static [&'static str],
    /// Its sectioner, if its documents have addressable sections.
    pub sectioner: Option<&'static dyn sections::Sectioner>,
}

/// Every format with readable text: the one place a format is registered.
/// Detection, [`for_type`], [`has_text`] and [`sections::sectioner_for`]
/// read it. Opaque content is not a row: it is what no format claims.
pub static FORMATS: &[Format] = &[
    Format {
        adapter: &Html,
        extensions: &["html", "htm"],
        sectioner: Some(&sections::HtmlSections),
    },
    Format {
        adapter: &Markdown,
        extensions: &["md", "markdown"],
        sectioner: Some(&sections::MarkdownSections),
    },
    Format {
        adapter: &Json,
        extensions: &["json"],
        sectioner: None,
    },
    Format {
        adapter: &Text,
        extensions: &["txt", "text"],
        sectioner: None,
    },
];

/// The registered format of an artifact type.
pub fn format(artifact_type: &str) -> Option<&'static Format> {
    FORMATS
        .iter()
        .find(|f| f.adapter.artifact_type() == artifact_type)
}

/// The adapter that produced `artifact_type`, to read stored content back
/// (readable text, sections). Unknown types are treated as opaque bytes.
pub fn for_type(artifact_type: &str) -> &'static dyn SourceAdapter {
    format(artifact_type).map_or(&Opaque("application/octet-stream"), |f| f.adapter)
}

/// Whether content of this type has readable text worth indexing.
pub fn has_text(artifact_type: &str) -> bool {
    format(artifact_type).is_some()
}

/// Chooses the adapter for `bytes` named `name`, validates, and describes.
/// Errors only for content that claims a text format but is not valid in it.
pub fn detect(
    name: &str,
    bytes: &[u8],
) -> Result<(&'static dyn SourceAdapter, Parsed), AdapterError> {
    detect_inner(name, bytes, true, true)
}

/// Like [`detect`], from the first bytes of content too large to read whole:
/// the format is chosen the same way, but a JSON document cannot be parsed
/// from a prefix, so it is not validated (and has no title).
pub fn detect_prefix(
    name: &str,
    head: &[u8],
) -> Result<(&'static dyn SourceAdapter, Parsed), AdapterError> {
    detect_inner(name, head, false, true)
}

/// The name a gzip file's content had: `notes.md.gz` held `notes.md`.
fn without_gz(name: &str) -> &str {
    let n = name.len();
    match name.get(n.saturating_sub(3)..) {
        Some(ext) if ext.eq_ignore_ascii_case(".gz") => name.get(..n - 3).unwrap_or(name),
        _ => name,
    }
}

/// A prefix may end inside a UTF-8 character; that is not invalid content.
fn trim_incomplete_utf8(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => bytes.get(..e.valid_up_to()).unwrap_or(bytes),
        _ => bytes,
    }
}

fn detect_inner(
    name: &str,
    bytes: &[u8],
    complete: bool,
    open_gzip: bool,
) -> Result<(&'static dyn SourceAdapter, Parsed), AdapterError> {
    static HTML: Html = Html;
    static JSON: Json = Json;
    static TEXT: Text = Text;
    // gzip of text is that text (one level only: a gzip inside a gzip is
    // opaque, so nesting cannot recurse); anything else, a corrupt stream
    // or one past the limits stays an opaque `application/gzip`.
    if open_gzip
        && gzip::is_gzip(bytes)
        && let Ok((inner, whole)) = gzip::inflate(bytes, complete)
        && let Ok((adapter, mut parsed)) =
            detect_inner(without_gz(name), &inner, complete && whole, false)
        && has_text(parsed.artifact_type)
    {
        parsed.content_encoding = Some("gzip");
        return Ok((adapter, parsed));
    }
    let bytes = if complete {
        bytes
    } else {
        trim_incomplete_utf8(bytes)
    };
    for (sig, adapter) in SIGNATURES {
        if bytes.starts_with(sig) {
            return Ok((adapter, adapter.parse(bytes)?));
        }
    }
    let head = &bytes[..bytes.len().min(8192)];
    let ext = extension(name);
    let claimed = FORMATS
        .iter()
        .find(|f| f.extensions.contains(&ext.as_str()));
    if head.contains(&0) && claimed.is_none() {
        static BIN: Opaque = Opaque("application/octet-stream");
        return Ok((&BIN, BIN.parse(bytes)?));
    }
    let head_str = lossy(head);
    let adapter: &'static dyn SourceAdapter = match claimed {
        Some(f) => f.adapter,
        None if looks_like_html(&head_str) => &HTML,
        None => {
            // Unknown name: text if it is valid UTF-8 (JSON if it parses), else opaque.
            if std::str::from_utf8(bytes).is_ok() {
                let t = strip_bom(&head_str).trim_start();
                if (t.starts_with('{') || t.starts_with('[')) && JSON.parse(bytes).is_ok() {
                    &JSON
                } else {
                    &TEXT
                }
            } else {
                static BIN: Opaque = Opaque("application/octet-stream");
                &BIN
            }
        }
    };
    if !complete && adapter.artifact_type() == "json" {
        utf8("JSON", bytes)?;
        return Ok((
            adapter,
            Parsed {
                artifact_type: "json",
                media_type: "application/json".to_owned(),
                title: None,
                content_encoding: None,
            },
        ));
    }
    let mut parsed = adapter.parse(bytes)?;
    if adapter.artifact_type() == "text" {
        parsed.media_type = text_media_type(&ext).to_owned();
    }
    parsed.title = parsed
        .title
        .map(|t| t.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|t| !t.is_empty());
    Ok((adapter, parsed))
}

/// Text formats without an adapter of their own keep a precise media type.
fn text_media_type(ext: &str) -> &'static str {
    match ext {
        "csv" => "text/csv; charset=utf-8",
        "tsv" => "text/tab-separated-values; charset=utf-8",
        "jsonl" | "ndjson" => "application/jsonl",
        "svg" => "image/svg+xml",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "toml" => "application/toml",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "rs" | "py" | "go" | "c" | "h" | "java" | "sh" | "ts" => "text/x-source; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    }
}

/// `String::from_utf8_lossy`, with valid UTF-8 (nearly every text) checked
/// by `str::from_utf8` first: its word-at-a-time ASCII path is several times
/// quicker than the lossy decoder's walk (`Utf8Chunks`, ~3 % of ingest's
/// instructions in a callgrind profile, run over every text).
pub(crate) fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_borrows_valid_text_and_replaces_invalid_bytes() {
        assert!(matches!(lossy("héllo".as_bytes()), Cow::Borrowed("héllo")));
        assert_eq!(lossy(b"a\xffb\xe2\x82"), "a\u{fffd}b\u{fffd}");
        let long: Vec<u8> = b"ascii ".repeat(100).into_iter().chain(*b"\xc3").collect();
        assert_eq!(lossy(&long), String::from_utf8_lossy(&long));
    }

    fn kind(name: &str, bytes: &[u8]) -> (String, String, Option<String>) {
        let (_, p) = detect(name, bytes).unwrap();
        (p.artifact_type.to_owned(), p.media_type, p.title)
    }

    #[test]
    fn k5_detection_trusts_bytes_over_names() {
        assert_eq!(kind("a.md", b"%PDF-1.7 ...").1, "application/pdf");
        assert_eq!(kind("notes", b"<!DOCTYPE html><title>Hi</title>").0, "html");
        assert_eq!(
            kind("data", br#"{"title": "T", "x": 1}"#),
            ("json".into(), "application/json".into(), Some("T".into()))
        );
        assert_eq!(kind("README", b"plain words").0, "text");
        assert_eq!(kind("blob.bin", b"\x00\x01\x02").0, "opaque");
        assert_eq!(
            kind("guide.md", "# Guide\n\ntext".as_bytes()).2,
            Some("Guide".into())
        );
    }

    #[test]
    fn k5_review_cases() {
        let (_, p) = detect_prefix("big.json", b"{\"a\": [1, 2, ").unwrap();
        assert_eq!(
            p.artifact_type, "json",
            "a large JSON file is described from its prefix"
        );
        assert_eq!(
            kind(
                "page",
                b"<!-- generated --><?xml version='1.0'?><html><title>X</title></html>"
            )
            .0,
            "html"
        );
        assert_eq!(
            kind("doc", "\u{feff}{\"title\": \"B\"}".as_bytes()).0,
            "json"
        );
        assert_eq!(kind("a.csv", b"a,b\n1,2\n").1, "text/csv; charset=utf-8");
        assert_eq!(kind("p.html", b"<html><!-- <title>no</title> --><title>A &mdash; B</title><svg><title>icon</title></svg></html>").2, Some("A — B".into()));
        assert_eq!(kind("c.md", b"    # code\n\ntext").2, None);
        assert_eq!(
            kind("f.md", b"---\n# Real\n").2,
            Some("Real".into()),
            "unclosed front matter is no front matter"
        );
    }

    #[test]
    fn k5_text_formats_must_be_valid() {
        let e = detect("a.md", b"ok \xff\xfe bad").unwrap_err();
        assert_eq!(
            e,
            AdapterError::InvalidUtf8 {
                format: "markdown",
                offset: 3
            }
        );
        assert!(e.to_string().contains("invalid UTF-8 at byte 3"));
        assert!(matches!(
            detect("a.json", b"{nope").unwrap_err(),
            AdapterError::InvalidJson(_)
        ));
    }
}
