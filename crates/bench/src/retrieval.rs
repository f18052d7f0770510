//! Retrieval benchmarks (issue 4), each side by side with its peer in one run:
//! - ingest with indexing on, until every document is searchable, vs a
//!   hand-written Python sqlite3 + FTS5 baseline (`bench/fts5_baseline.py`);
//! - query latency through the search service vs a minimal tantivy program
//!   over the same texts doing the same top-10 with stored fields, count and
//!   snippets;
//! - context package builds under a 4,000-token budget.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kontextual_app::{
    Caller, ContextRequest, SearchFilters, SearchRequest, Services, StoreConfig, StoreOpenMode,
};
use kontextual_model::{Actor, Namespace};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, ReloadPolicy, TantivyDocument, Term};

/// Deterministic xorshift.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A vocabulary of pronounceable pseudo-words, drawn with a Zipf
/// distribution (rank^-1), so the corpus has realistic term statistics.
struct Words {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Words {
    fn new(n: usize, rng: &mut Rng) -> Words {
        const SYL: [&str; 24] = [
            "ka", "ro", "mi", "tu", "le", "sa", "no", "vi", "de", "zu", "pa", "lo", "ne", "ri",
            "ta", "ko", "gu", "be", "fi", "ma", "so", "xe", "ly", "qu",
        ];
        let mut words = Vec::with_capacity(n);
        let mut seen = std::collections::HashSet::new();
        while words.len() < n {
            let len = 2 + rng.below(3);
            let w: String = (0..len).map(|_| SYL[rng.below(SYL.len())]).collect();
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut acc = 0.0;
        let cumulative = (1..=n)
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect();
        Words { words, cumulative }
    }
    fn pick(&self, rng: &mut Rng) -> &str {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let x = (rng.next() % 1_000_000_007) as f64 / 1_000_000_007.0 * total;
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }
    fn sentence(&self, rng: &mut Rng, n: usize) -> String {
        (0..n).map(|_| self.pick(rng)).collect::<Vec<_>>().join(" ")
    }
}

/// Documents of 1–8 KB with a title, sections and paragraphs, in 100
/// sub-directories: three in four Markdown, one in four an HTML page with
/// site chrome around its `<main>` (issue 15: a corpus with HTML).
fn make_corpus(dir: &Path, n: usize, words: &Words, rng: &mut Rng) -> Result<(Vec<PathBuf>, u64)> {
    let mut files = Vec::with_capacity(n);
    let mut total = 0;
    for i in 0..n {
        let size = 1024 + rng.below(7 * 1024);
        let html = i % 4 == 3;
        let title = words.sentence(rng, 4);
        let mut body = if html {
            format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
                 <body><nav><a href=\"/\">Home</a> · <a href=\"/docs\">Docs</a></nav>\n<main>\n<h1>{title}</h1>\n"
            )
        } else {
            format!("# {title}\n\n")
        };
        while body.len() < size {
            if rng.below(6) == 0 {
                let h = words.sentence(rng, 3);
                body.push_str(&if html {
                    format!("<h2>{h}</h2>\n")
                } else {
                    format!("## {h}\n\n")
                });
            }
            let len = 20 + rng.below(60);
            let para = words.sentence(rng, len);
            body.push_str(&if html {
                format!("<p>{para}.</p>\n")
            } else {
                format!("{para}.\n\n")
            });
        }
        if html {
            body.push_str("</main>\n<footer>bench corpus</footer></body></html>\n");
        }
        let sub = dir.join(format!("d{:02}", i % 100));
        std::fs::create_dir_all(&sub)?;
        let p = sub.join(format!("doc{i:06}.{}", if html { "html" } else { "md" }));
        std::fs::write(&p, &body)?;
        total += body.len() as u64;
        files.push(p);
    }
    Ok((files, total))
}

/// The query set: single words, phrases cut from documents, and filtered words.
fn make_queries(files: &[PathBuf], words: &Words, rng: &mut Rng) -> Result<Vec<(String, bool)>> {
    let mut q = Vec::new();
    for _ in 0..120 {
        // ranks 5..3000: common to rare
        let w = &words.words[5 + rng.below(2995)];
        q.push((w.clone(), false));
    }
    while q.len() < 180 {
        let text = std::fs::read_to_string(&files[rng.below(files.len())])?;
        let toks: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        if toks.len() > 10 {
            let i = 5 + rng.below(toks.len() - 6);
            q.push((format!("\"{} {}\"", toks[i], toks[i + 1]), false));
        }
    }
    for _ in 0..60 {
        let w = &words.words[5 + rng.below(2995)];
        q.push((w.clone(), true));
    }
    Ok(q)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

/// The floor: a minimal tantivy program over the same texts.
struct Floor {
    index: Index,
    reader: tantivy::IndexReader,
    title: tantivy::schema::Field,
    body: tantivy::schema::Field,
    kind: tantivy::schema::Field,
}

impl Floor {
    fn build(dir: &Path, files: &[PathBuf]) -> Result<Floor> {
        let mut b = Schema::builder();
        let text = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("en_stem")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let title = b.add_text_field("title", text.clone());
        let body = b.add_text_field("body", text);
        let kind = b.add_text_field("kind", STRING | STORED);
        std::fs::create_dir_all(dir)?;
        let index = Index::create_in_dir(dir, b.build())?;
        let mut w = index.writer_with_num_threads(2, 256 * 1024 * 1024)?;
        for f in files {
            let t = std::fs::read_to_string(f)?;
            let first = t.lines().next().unwrap_or("").trim_start_matches("# ");
            let mut d = TantivyDocument::default();
            d.add_text(title, first);
            d.add_text(body, &t);
            d.add_text(kind, "markdown");
            w.add_document(d)?;
        }
        w.commit()?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Floor {
            index,
            reader,
            title,
            body,
            kind,
        })
    }

    fn search(&self, q: &str, filtered: bool) -> Result<usize> {
        let searcher = self.reader.searcher();
        let mut parser = QueryParser::for_index(&self.index, vec![self.title, self.body]);
        parser.set_field_boost(self.title, 3.0);
        let text = parser.parse_query(q)?;
        let query: Box<dyn Query> = if filtered {
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, text.box_clone()),
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(
                        Box::new(TermQuery::new(
                            Term::from_field_text(self.kind, "markdown"),
                            IndexRecordOption::Basic,
                        )),
                        0.0,
                    )),
                ),
            ]))
        } else {
            text.box_clone()
        };
        let (top, _count) =
            searcher.search(&query, &(TopDocs::with_limit(10).order_by_score(), Count))?;
        let mut g = SnippetGenerator::create(&searcher, &*text, self.body)?;
        g.set_max_num_chars(160);
        let mut n = 0;
        for (_, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let _title = d.get_first(self.title).and_then(|v| v.as_str());
            let s = g.snippet_from_doc(&d);
            n += s.fragment().len().min(1);
        }
        Ok(n)
    }
}

/// Writes the retrieval corpus (for other benchmarks).
pub fn generate(dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let words = Words::new(30_000, &mut rng);
    Ok(make_corpus(dir, n, &words, &mut rng)?.0)
}

pub fn run(n: usize, rounds: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let words = Words::new(30_000, &mut rng);
    eprintln!(
        "generating {n} files of 1–8 KB, a quarter of them HTML (Zipf vocabulary of 30,000 words)…"
    );
    let corpus = tmp.path().join("corpus");
    let (files, total) = make_corpus(&corpus, n, &words, &mut rng)?;
    let mb = total as f64 / 1e6;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/fts5_baseline.py");

    // ---- ingest + index vs Python FTS5 ----
    let (mut ks, mut ps) = (Vec::new(), Vec::new());
    let mut svc_keep = None;
    for round in 0..rounds {
        for side in 0..2 {
            crate::settle(&files);
            let dir = tmp.path().join(format!("r{round}s{side}"));
            std::fs::create_dir_all(&dir)?;
            if (side + round) % 2 == 0 {
                let cfg = StoreConfig {
                    data_dir: dir.join("data"),
                    busy_timeout: Duration::from_secs(30),
                };
                let start = Instant::now();
                let svc = Services::open(&cfg, StoreOpenMode::Create)?;
                let caller = Caller::new(Actor::local_admin(), Namespace::default());
                let req = kontextual_app::IngestRequest {
                    paths: vec![corpus.clone()],
                    collection: "bench".to_owned(),
                    prune: false,
                    source_system: None,
                };
                let r = svc.ingest_and_index(&caller, &req, &kontextual_app::NoProgress)?;
                let d = start.elapsed();
                let idx = r.indexed.as_ref().map_or(0, |i| i.artifacts);
                if r.new != n as u64 || idx < n as u64 {
                    bail!("ingest stored {} and indexed {idx} of {n}", r.new);
                }
                eprintln!(
                    "  kontextual ingest+index: {:.2} s (store {} ms, index tail {} ms)",
                    d.as_secs_f64(),
                    r.store_ms,
                    r.indexed.as_ref().map_or(0, |i| i.tail_ms)
                );
                ks.push(d);
                if round + 1 == rounds {
                    svc_keep = Some((svc, dir));
                }
            } else {
                let out = std::process::Command::new("python3")
                    .arg(&script)
                    .arg(&corpus)
                    .arg(dir.join("fts5.db"))
                    .output()
                    .context("running python3 bench/fts5_baseline.py")?;
                if !out.status.success() {
                    bail!("baseline failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                let secs = v["seconds"].as_f64().unwrap_or(0.0);
                if v["docs"].as_u64() != Some(n as u64) {
                    bail!("baseline indexed {} docs", v["docs"]);
                }
                eprintln!("  python sqlite3 + FTS5: {secs:.2} s");
                ps.push(Duration::from_secs_f64(secs));
            }
        }
    }
    let (k, p) = (percentile(&mut ks, 0.5), percentile(&mut ps, 0.5));
    println!("\n### Ingest until searchable: {n} markdown files, {mb:.1} MB, median of {rounds}\n");
    println!("| side | seconds | docs/s | MB/s | vs baseline (docs/s) |");
    println!("|---|---|---|---|---|");
    for (label, d) in [
        ("python sqlite3 + FTS5 (baseline)", p),
        ("kontextual ingest, indexing on", k),
    ] {
        let s = d.as_secs_f64();
        println!(
            "| {label} | {s:.2} | {:.0} | {:.1} | {:.2}× |",
            n as f64 / s,
            mb / s,
            p.as_secs_f64() / s
        );
    }

    // ---- query latency vs a minimal tantivy program ----
    let (svc, dir) = svc_keep.context("no kontextual store kept")?;
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    let t = Instant::now();
    let floor = Floor::build(&dir.join("floor-index"), &files)?;
    eprintln!(
        "  floor index built in {:.2} s (one document per file, committed)",
        t.elapsed().as_secs_f64()
    );
    let queries = make_queries(&files, &words, &mut rng)?;
    let ours = |q: &str, filtered: bool| -> Result<usize> {
        let mut filters = SearchFilters::default();
        if filtered {
            filters.types = vec!["markdown".into()];
        }
        let r = svc.search(
            &caller,
            &SearchRequest {
                query: q.to_owned(),
                // phrases, as the floor's query parser reads them
                syntax: true,
                filters,
                limit: 10,
                ..Default::default()
            },
        )?;
        Ok(r.hits.len())
    };
    // warm both (page cache, lazily loaded structures)
    for (q, f) in &queries {
        ours(q, *f)?;
        floor.search(q, *f)?;
    }
    let (mut lo, mut lf) = (Vec::new(), Vec::new());
    for round in 0..3 {
        for (i, (q, f)) in queries.iter().enumerate() {
            // alternate which side goes first
            let ours_first = (i + round) % 2 == 0;
            for side in 0..2 {
                let start = Instant::now();
                if (side == 0) == ours_first {
                    ours(q, *f)?;
                    lo.push(start.elapsed());
                } else {
                    floor.search(q, *f)?;
                    lf.push(start.elapsed());
                }
            }
        }
    }
    let (o50, o99) = (percentile(&mut lo, 0.5), percentile(&mut lo, 0.99));
    let (f50, f99) = (percentile(&mut lf, 0.5), percentile(&mut lf, 0.99));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\n### Query latency: {} queries (120 words, 60 phrases, 60 filtered) × 3 rounds, top 10 with titles and snippets\n",
        queries.len()
    );
    println!("| side | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| floor: minimal tantivy program | {:.3} | {:.3} |",
        ms(f50),
        ms(f99)
    );
    println!(
        "| kontextual search service | {:.3} | {:.3} |",
        ms(o50),
        ms(o99)
    );
    println!(
        "| ratio | {:.2}× | {:.2}× |",
        ms(o50) / ms(f50),
        ms(o99) / ms(f99)
    );

    // ---- context package builds ----
    let mut lc = Vec::new();
    let reps: usize = std::env::var("KX_CTX_LOOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for (i, (q, _)) in queries
        .iter()
        .take(100)
        .cycle()
        .take(100 * reps)
        .enumerate()
    {
        let start = Instant::now();
        let v = svc.context_build(
            &caller,
            &ContextRequest {
                name: format!("bench-{i}"),
                queries: vec![q.trim_matches('"').to_owned()],
                budget: 4000,
                ..Default::default()
            },
        )?;
        lc.push(start.elapsed());
        if v.manifest.tokens_used > 4000 {
            bail!("package over budget");
        }
    }
    let (c50, c99) = (percentile(&mut lc, 0.5), percentile(&mut lc, 0.99));
    println!("\n### Context package build, 4,000-token budget, 100 queries\n");
    println!("| p50 ms | p99 ms |");
    println!("|---|---|");
    println!("| {:.1} | {:.1} |", ms(c50), ms(c99));
    Ok(())
}
