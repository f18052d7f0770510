//! Printing: tables for people, JSON for scripts. Data goes to stdout,
//! messages to stderr.

use std::io::Write;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ColumnConstraint, ContentArrangement, Table, Width};
use kontextual_model::Timestamp;
use serde::Serialize;

pub struct Out {
    pub json: bool,
    pub quiet: bool,
}

impl Out {
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, value)?;
        writeln!(stdout)?;
        Ok(())
    }

    /// A line for people; suppressed by --quiet and --json.
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet && !self.json {
            println!("{}", msg.as_ref());
        }
    }

    /// Rows for people on a terminal (a table fitted to its width); when
    /// piped, one line per row with tab-separated cells and no padding, for
    /// `cut`, `awk` and friends (`--json` for everything else).
    pub fn table(&self, header: &[&str], rows: Vec<Vec<String>>) {
        use std::io::IsTerminal;
        if !std::io::stdout().is_terminal() {
            let mut out = std::io::stdout().lock();
            let clean = |c: &str| c.replace(['\t', '\n'], " ");
            let _ = writeln!(out, "{}", header.join("\t"));
            for r in rows {
                let cells: Vec<String> = r.iter().map(|c| clean(c)).collect();
                let _ = writeln!(out, "{}", cells.join("\t"));
            }
            return;
        }
        let width = terminal_width();
        println!("{}", render_table(header, rows, width));
    }

    /// Key/value pairs, one per line, aligned.
    pub fn fields(&self, rows: &[(&str, String)]) {
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("{k:<width$}  {v}");
        }
    }
}

/// The terminal's width in columns (`COLUMNS` wins, as in most tools).
fn terminal_width() -> u16 {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .or_else(|| comfy_table::Table::new().width())
        .unwrap_or(80)
}

/// Renders rows as a table at most `width` columns wide. Cells wrap at
/// spaces, never inside a word — names, refs and ids stay whole: each
/// column is at least as wide as its longest word. Only when those words
/// alone cannot fit are the longest of them shortened, with an ellipsis in
/// the middle so the start and the end (an extension, a revision) remain.
fn render_table(header: &[&str], mut rows: Vec<Vec<String>>, width: u16) -> String {
    let columns = header.len();
    let longest_word = |rows: &[Vec<String>], c: usize| -> usize {
        rows.iter()
            .filter_map(|r| r.get(c))
            .flat_map(|cell| cell.split_whitespace())
            .chain(header[c].split_whitespace())
            .map(|w| w.chars().count())
            .max()
            .unwrap_or(0)
    };
    // UTF8_FULL_CONDENSED: a border and a space either side of each cell
    let budget = usize::from(width).saturating_sub(3 * columns + 1);
    let mut words: Vec<usize> = (0..columns).map(|c| longest_word(&rows, c)).collect();
    while words.iter().sum::<usize>() > budget {
        let Some((widest, &now)) = words.iter().enumerate().max_by_key(|(_, w)| **w) else {
            break;
        };
        let excess = words.iter().sum::<usize>() - budget;
        let cap = now.saturating_sub(excess).max(MIN_WORD);
        if cap >= now {
            break; // every word is as short as it may get
        }
        for r in &mut rows {
            if let Some(cell) = r.get_mut(widest) {
                *cell = cell
                    .split(' ')
                    .map(|w| shorten(w, cap))
                    .collect::<Vec<_>>()
                    .join(" ");
            }
        }
        words[widest] = longest_word(&rows, widest);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    for (c, w) in words.iter().enumerate() {
        if let Some(col) = t.column_mut(c) {
            // the boundary counts the cell's padding too
            let w = u16::try_from(*w + 2).unwrap_or(u16::MAX);
            col.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(w)));
        }
    }
    t.to_string()
}

/// Words are never shortened below this many characters.
const MIN_WORD: usize = 12;

/// `word` in at most `max` characters: its start, `…`, its end.
fn shorten(word: &str, max: usize) -> String {
    let n = word.chars().count();
    if n <= max {
        return word.to_owned();
    }
    let tail = (max - 1) / 2;
    let head = max - 1 - tail;
    let start: String = word.chars().take(head).collect();
    let end: String = word.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

pub fn short_digest(d: &kontextual_model::Digest) -> String {
    let hex = d.hex();
    format!("sha256:{}…", &hex[..12])
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_fit(out: &str, width: usize) {
        for line in out.lines() {
            assert!(
                line.chars().count() <= width,
                "{} > {width}: {line}",
                line.chars().count()
            );
        }
    }

    #[test]
    fn x6_tables_fit_the_terminal_without_breaking_names() {
        let rows = vec![
            vec![
                "handbook/guides/installation-on-linux.md".to_owned(),
                "3".to_owned(),
                "How to install the runtime on Linux hosts, with systemd units and a data directory".to_owned(),
            ],
            vec![
                "handbook/intro.md".to_owned(),
                "12".to_owned(),
                "Introduction".to_owned(),
            ],
        ];
        let out = render_table(&["NAME", "REVISION", "TITLE"], rows, 80);
        lines_fit(&out, 80);
        assert!(
            out.contains("handbook/guides/installation-on-linux.md"),
            "{out}"
        );
        // the title wrapped at spaces: each of its words is intact
        for w in ["systemd", "directory", "Introduction"] {
            assert!(out.contains(w), "{w} broken in\n{out}");
        }
    }

    #[test]
    fn x6_names_too_long_for_any_terminal_are_shortened_in_the_middle() {
        let long = format!("handbook/{}/end.md", "deep/".repeat(30));
        let out = render_table(
            &["NAME", "DIGEST"],
            vec![vec![long, "sha256:0123456789ab…".to_owned()]],
            80,
        );
        lines_fit(&out, 80);
        assert!(out.contains("handbook/deep"), "{out}");
        assert!(out.contains("…") && out.contains("end.md"), "{out}");
        assert_eq!(shorten("abcdefghij", 5), "ab…ij");
        assert_eq!(shorten("abc", 5), "abc");
    }
}
