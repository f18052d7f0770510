//! Printing: tables for people, JSON for scripts. Data goes to stdout,
//! messages to stderr.

use std::io::Write;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
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
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(header.to_vec());
        for r in rows {
            t.add_row(r);
        }
        println!("{t}");
    }

    /// Key/value pairs, one per line, aligned.
    pub fn fields(&self, rows: &[(&str, String)]) {
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("{k:<width$}  {v}");
        }
    }
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
