//! Markdown titles: a `title:` in YAML front matter, else the first ATX
//! (`# Title`) or setext (`Title` over `===`) level-1 heading.

pub fn title(s: &str) -> Option<String> {
    let mut lines = s.lines().peekable();
    // front matter only counts if it is closed
    let closed = s
        .lines()
        .skip(1)
        .any(|l| l.trim_end() == "---" || l.trim_end() == "...");
    if closed && lines.peek().is_some_and(|l| l.trim_end() == "---") {
        lines.next();
        for l in lines.by_ref() {
            if l.trim_end() == "---" || l.trim_end() == "..." {
                break;
            }
            if let Some(v) = l.strip_prefix("title:") {
                let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
                if !v.is_empty() {
                    return Some(v.to_owned());
                }
            }
        }
    }
    let mut prev: Option<&str> = None;
    let mut in_fence = false;
    for l in lines {
        let t = l.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            prev = None;
            continue;
        }
        if in_fence {
            continue;
        }
        let indent = l.len() - t.len();
        if indent >= 4 {
            prev = None; // indented code, not a heading
            continue;
        }
        if let Some(rest) = t.strip_prefix("# ") {
            let title = rest.trim().trim_end_matches('#').trim();
            if !title.is_empty() {
                return Some(title.to_owned());
            }
        }
        if !t.is_empty()
            && t.chars().all(|c| c == '=')
            && let Some(p) = prev.map(str::trim).filter(|p| !p.is_empty())
        {
            return Some(p.to_owned());
        }
        prev = Some(l);
    }
    None
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
}
