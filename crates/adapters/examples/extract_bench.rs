//! Measures HTML text extraction on real files (ADR 0002, "HTML parser
//! choice"): `cargo run --release -p kontextual-adapters --example
//! extract_bench -- FILE...` prints MB/s over all files and each file's time.
//! It also runs detection and sections, so it doubles as a no-panic check on
//! a real corpus.

use std::time::Instant;

use kontextual_adapters::{detect, for_type, sections::sectioner_for};

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let mut total_bytes = 0usize;
    let mut total_text = std::time::Duration::ZERO;
    let mut total_sections = std::time::Duration::ZERO;
    let mut n_sections = 0usize;
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        let (adapter, parsed) = match detect(f, &bytes) {
            Ok(x) => x,
            Err(e) => {
                println!("{f}: refused: {e}");
                continue;
            }
        };
        let t = Instant::now();
        let text = adapter.text(&bytes);
        let took = t.elapsed();
        if std::env::var_os("KX_PRINT").is_some() {
            println!("{text}");
        }
        total_text += took;
        total_bytes += bytes.len();
        let t = Instant::now();
        if let Some(s) = sectioner_for(parsed.artifact_type) {
            let doc = String::from_utf8_lossy(&bytes);
            let secs = s.sections(&doc);
            for sec in &secs {
                let _ = s.text_of(&doc, sec.own_range());
            }
            n_sections += secs.len();
        }
        total_sections += t.elapsed();
        if files.len() <= 20 {
            println!(
                "{f}: {} bytes -> {} chars text in {:?} ({:?})",
                bytes.len(),
                text.len(),
                took,
                parsed.title
            );
        }
        let _ = for_type(parsed.artifact_type);
    }
    let mb = total_bytes as f64 / 1e6;
    println!(
        "{} files, {mb:.1} MB: text {:.3}s = {:.1} MB/s; sections ({n_sections}) {:.3}s",
        files.len(),
        total_text.as_secs_f64(),
        mb / total_text.as_secs_f64(),
        total_sections.as_secs_f64()
    );
}
