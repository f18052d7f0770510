//! A first guess at artifact type and media type from a file name. The
//! ingestion adapters replace this with content sniffing.

/// Returns `(artifact type, media type)`.
pub fn guess(name: &str) -> (String, String) {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let (t, m) = match ext.as_str() {
        "md" | "markdown" => ("markdown", "text/markdown"),
        "txt" | "text" => ("text", "text/plain"),
        "html" | "htm" => ("html", "text/html"),
        "json" => ("json", "application/json"),
        _ => ("opaque", "application/octet-stream"),
    };
    (t.to_owned(), m.to_owned())
}
