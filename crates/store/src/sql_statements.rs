//! X7: every statement of the shared SQL layer prepares on both engines —
//! so a typo or a dialect mistake fails here even where no conformance
//! case reaches the statement.
//!
//! Statements are found in the shared modules' source (everything under
//! `src/` except the engines' own directories): string literals that start
//! with a SQL verb, with `format!` pieces filled in from the file's `const`
//! strings (column lists); statements assembled at run time or from
//! `concat!` pieces are counted, not checked. A literal written in an arm of
//! `match tx.dialect() { Dialect::Sqlite => …, Dialect::Postgres => … }` is
//! prepared only on its engine: the nearest `Dialect::…` before the literal,
//! with no `;` between them, names it; so does a `const` or `static` whose
//! name ends in `_PG` (or `_POSTGRES`) or `_SQLITE`. Unit-test modules
//! (which make their own tables) are not scanned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const VERBS: &[&str] = &[
    "SELECT ", "INSERT ", "UPDATE ", "DELETE ", "WITH ", "CREATE ", "ALTER ",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Both,
    Sqlite,
    Postgres,
}

#[derive(Debug)]
struct Statement {
    at: String,
    sql: String,
    only: Only,
}

/// The string literals of a Rust source file: (byte offset, value).
fn literals(src: &str) -> Vec<(usize, String)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' => {
                // a char literal ('"', '\'') or a lifetime: skip the quoted char
                if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') {
                    i += 4;
                } else {
                    i += 1;
                }
            }
            b'"' => {
                let start = i;
                let mut s = String::new();
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        match b.get(i + 1) {
                            Some(b'\n') => {
                                i += 2;
                                while i < b.len() && b[i].is_ascii_whitespace() {
                                    i += 1;
                                }
                                continue;
                            }
                            Some(b'n') => s.push('\n'),
                            Some(&c) => s.push(c as char),
                            None => {}
                        }
                        i += 2;
                        continue;
                    }
                    // multi-byte characters are copied whole
                    let len = src[i..].chars().next().map_or(1, char::len_utf8);
                    s.push_str(&src[i..i + len]);
                    i += len;
                }
                out.push((start, s));
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// `const NAME: &str = "…";` strings of a file, for `format!` pieces.
fn consts(src: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (at, value) in literals(src) {
        let before = &src[..at];
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        let mut head = before[line_start..].trim();
        if head.is_empty() && line_start > 0 {
            // `const NAME: &str =\n    "…";`
            let prev = &before[..line_start - 1];
            head = prev[prev.rfind('\n').map_or(0, |p| p + 1)..].trim();
        }
        let head = head
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ");
        if let Some(rest) = head.strip_prefix("const ")
            && let Some((name, _)) = rest.split_once(':')
        {
            out.insert(name.trim().to_owned(), value);
        }
    }
    out
}

/// The engine a `const` or `static` is named for (`…_PG`, `…_POSTGRES`,
/// `…_SQLITE`), from the text after `const ` / `static `.
fn named_for(declaration: &str) -> Option<Only> {
    let name = declaration.split(':').next().unwrap_or_default().trim();
    if name.ends_with("_PG") || name.ends_with("_POSTGRES") {
        Some(Only::Postgres)
    } else if name.ends_with("_SQLITE") {
        Some(Only::Sqlite)
    } else {
        None
    }
}

fn which_dialect(src: &str, at: usize) -> Only {
    let before = &src[..at];
    // `const NAME_PG: &str = "…"` / `NAME_SQLITE`: one engine's spelling
    let line = &before[before.rfind('\n').map_or(0, |p| p + 1)..];
    if let Some(only) = line
        .trim_start()
        .trim_start_matches("pub(crate) ")
        .strip_prefix("const ")
        .and_then(named_for)
    {
        return only;
    }
    // `static NAME_PG: LazyLock<String> = LazyLock::new(|| format!("…"))`:
    // the literal is in the initializer when no `;` follows the name
    if let Some(only) = before
        .rfind("static ")
        .filter(|&p| !before[p..].contains(';'))
        .and_then(|p| named_for(&before[p + "static ".len()..]))
    {
        return only;
    }
    let sqlite = before.rfind("Dialect::Sqlite");
    let postgres = before.rfind("Dialect::Postgres");
    let boundary = before.rfind(';');
    let (marker, only) = match (sqlite, postgres) {
        (Some(s), Some(p)) if p > s => (p, Only::Postgres),
        (Some(s), _) => (s, Only::Sqlite),
        (None, Some(p)) => (p, Only::Postgres),
        (None, None) => return Only::Both,
    };
    if boundary.is_some_and(|b| b > marker) {
        Only::Both
    } else {
        only
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            // the engines' own code, and the test suite's tamper SQL
            if !matches!(name.to_str(), Some("sqlite" | "postgres" | "testsuite")) {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") && name != "sql_statements.rs" {
            out.push(p);
        }
    }
}

/// Whether the literal at `at` is a piece of a `concat!(…)` (a statement
/// assembled from macro pieces, not checked here).
fn inside_concat(src: &str, at: usize) -> bool {
    let Some(open) = src[..at].rfind("concat!(") else {
        return false;
    };
    // the macro's parentheses, not those inside its string pieces
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for c in src[open + "concat!".len()..at].chars() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (_, '"') => in_string = !in_string,
            (false, '(') => depth += 1,
            (false, ')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    // the macro closed before the literal
                    return false;
                }
            }
            _ => {}
        }
    }
    depth > 0
}

/// Fills `{NAME}` pieces from the file's consts; `None` when a piece is a
/// run-time value (the statement is then not checked here).
fn fill(sql: &str, consts: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        out.push_str(consts.get(&rest[open + 1..close])?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn statements() -> (Vec<Statement>, usize) {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    files.sort();
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let src = std::fs::read_to_string(&f).expect("read source");
            // unit tests make their own tables
            let src = match src.find("#[cfg(test)]\nmod ") {
                Some(end) => src[..end].to_owned(),
                None => src,
            };
            (f, src)
        })
        .collect();
    // Column lists and pieces are shared across modules (`ARTIFACT_COLS`):
    // a name every file agrees on fills another file's `format!` too.
    let mut shared: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (_, src) in &sources {
        for (name, value) in consts(src) {
            shared
                .entry(name)
                .and_modify(|v| {
                    if v.as_ref() != Some(&value) {
                        *v = None;
                    }
                })
                .or_insert(Some(value));
        }
    }
    let shared: BTreeMap<String, String> = shared
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
    let mut out = Vec::new();
    let mut dynamic = 0;
    for (f, src) in &sources {
        let src = src.as_str();
        let mut consts = shared.clone();
        consts.extend(self::consts(src));
        for (at, lit) in literals(src) {
            if !VERBS.iter().any(|v| lit.starts_with(v)) {
                continue;
            }
            let line = src[..at].matches('\n').count() + 1;
            let fragment = inside_concat(src, at);
            let Some(sql) = fill(&lit, &consts).filter(|_| !fragment) else {
                dynamic += 1;
                continue;
            };
            out.push(Statement {
                at: format!(
                    "{}:{line}",
                    f.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(f)
                        .display()
                ),
                sql,
                only: which_dialect(src, at),
            });
        }
    }
    // statements built once at run time (hot paths), checked the same way
    // (the batched read is PostgreSQL's; SQLite reads one at a time)
    use crate::knowledge::read as k;
    use crate::sql::Dialect::{Postgres, Sqlite};
    use crate::webhooks::{read as wr, write as ww};
    use Only::{Both, Postgres as Pg, Sqlite as Lite};
    let built = |at: &str, sql: String, only| Statement {
        at: at.to_owned(),
        sql,
        only,
    };
    out.extend([
        built(
            "knowledge/read.rs ARTIFACT_BY_ID",
            k::ARTIFACT_BY_ID.clone(),
            Both,
        ),
        built(
            "knowledge/read.rs ARTIFACT_BY_NAME",
            k::ARTIFACT_BY_NAME.clone(),
            Both,
        ),
        built(
            "knowledge/read.rs ARTIFACT_BY_NAMES",
            k::ARTIFACT_BY_NAMES.clone(),
            Both,
        ),
        built(
            "knowledge/read.rs listing",
            k::listing_in_collection(Sqlite),
            Lite,
        ),
        built(
            "knowledge/read.rs listing",
            k::listing_in_collection(Postgres),
            Pg,
        ),
        built(
            "knowledge/read.rs listing",
            k::listing_after_collection(Sqlite),
            Lite,
        ),
        built(
            "knowledge/read.rs listing",
            k::listing_after_collection(Postgres),
            Pg,
        ),
        built(
            "webhooks/read.rs DELIVERY_BY_ID",
            wr::DELIVERY_BY_ID.clone(),
            Both,
        ),
        built(
            "webhooks/read.rs WEBHOOK_WITH_SECRETS",
            wr::WEBHOOK_WITH_SECRETS_BY_ID.clone(),
            Both,
        ),
        built(
            "webhooks/read.rs DELIVERY_TO_SEND",
            wr::DELIVERY_TO_SEND.clone(),
            Both,
        ),
        built(
            "webhooks/read.rs DELIVERIES_WITH_BODIES_PG",
            wr::DELIVERIES_WITH_BODIES_PG.clone(),
            Pg,
        ),
        built(
            "webhooks/read.rs WEBHOOKS_WITH_SECRETS_PG",
            wr::WEBHOOKS_WITH_SECRETS_PG.clone(),
            Pg,
        ),
        built(
            "webhooks/write.rs UPDATE_DELIVERY",
            ww::UPDATE_DELIVERY.clone(),
            Both,
        ),
        built(
            "webhooks/write.rs FIRST_ATTEMPT",
            ww::FIRST_ATTEMPT.clone(),
            Both,
        ),
        built(
            "webhooks/write.rs FIRST_ATTEMPTS_PG",
            ww::FIRST_ATTEMPTS_PG.clone(),
            Pg,
        ),
    ]);
    (out, dynamic)
}

#[test]
fn x7_the_scanner_reads_literals_consts_and_dialect_arms() {
    let src = "const COLS: &str = \"a, b\";\nfn f() {\n    // \"SELECT not this\"\n    let c = '\"';\n    tx.execute(\"SELECT {COLS} \\\n      FROM t WHERE x = ?1\", &[]);\n    let s = match d {\n        Dialect::Sqlite => \"SELECT 1\",\n        Dialect::Postgres => \"SELECT 2\",\n    };\n    tx.execute(\"DELETE FROM t\", &[]);\n}\n";
    let lits: Vec<_> = literals(src).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        lits,
        [
            "a, b",
            "SELECT {COLS} FROM t WHERE x = ?1",
            "SELECT 1",
            "SELECT 2",
            "DELETE FROM t"
        ]
    );
    let c = consts(src);
    assert_eq!(
        fill("SELECT {COLS} FROM t", &c).as_deref(),
        Some("SELECT a, b FROM t")
    );
    assert_eq!(fill("SELECT {other} FROM t", &c), None);
    let dialects: Vec<_> = literals(src)
        .into_iter()
        .map(|(at, _)| which_dialect(src, at))
        .collect();
    assert_eq!(
        dialects,
        [
            Only::Both,
            Only::Both,
            Only::Sqlite,
            Only::Postgres,
            Only::Both
        ]
    );
    // a `static` named for one engine holds that engine's statement
    let src = "static ONE_PG: L<String> = L::new(|| format!(\"SELECT 1\"));\nstatic BOTH: L<String> = L::new(|| format!(\"SELECT 2\"));\nfn f() { q(\"SELECT 3\"); }\n";
    let dialects: Vec<_> = literals(src)
        .into_iter()
        .map(|(at, _)| which_dialect(src, at))
        .collect();
    assert_eq!(dialects, [Only::Postgres, Only::Both, Only::Both]);
    // a piece of `concat!` is a fragment; a statement after the macro is
    // not, whatever parentheses the pieces leave open
    let src = "m!(concat!(\"AND (x = ?1 OR \", \"y)\", \"AND (z \"));\nq(\"SELECT 1\");\n";
    let inside: Vec<_> = literals(src)
        .into_iter()
        .map(|(at, _)| inside_concat(src, at))
        .collect();
    assert_eq!(inside, [true, true, true, false]);
}

#[test]
fn x7_every_shared_statement_prepares_on_sqlite() {
    let (stmts, dynamic) = statements();
    assert!(stmts.len() >= 5, "found only {} statements", stmts.len());
    let mut conn = rusqlite::Connection::open_in_memory().expect("memory");
    crate::sqlite::schema::migrate(&mut conn, None, true).expect("migrate");
    let failures: Vec<String> = stmts
        .iter()
        .filter(|s| s.only != Only::Postgres)
        .filter_map(|s| {
            conn.prepare(&s.sql)
                .err()
                .map(|e| format!("{}: {e}\n    {}", s.at, s.sql))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} statements do not prepare on SQLite ({dynamic} built at run time not checked):\n{}",
        failures.len(),
        stmts.len(),
        failures.join("\n")
    );
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_every_shared_statement_prepares_on_postgres() {
    on_a_fresh_postgres_database(|conn| {
        let (stmts, dynamic) = statements();
        let failures: Vec<String> = stmts
            .iter()
            .filter(|s| s.only != Only::Sqlite)
            .filter_map(|s| {
                let sql = crate::sql::to_postgres(&s.sql);
                conn.client()
                    .prepare(&sql)
                    .err()
                    .map(|e| format!("{}: {}\n    {sql}", s.at, crate::postgres::pg_err(e)))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} statements do not prepare on PostgreSQL ({dynamic} built at run time not checked):\n{}",
            failures.len(),
            stmts.len(),
            failures.join("\n")
        );
    });
}

/// PostgreSQL caches a generic plan per prepared statement after five runs,
/// costed with the statistics of that moment — on a fresh store, empty
/// tables, where any index looks as good as another. A lookup by a key
/// then ran as a scan of whatever index the planner happened to pick,
/// filtering every artifact of a collection (migration 0003). So, planned
/// generically on an empty database, no statement may compare a parameter
/// in the filter of an index scan that walks a whole index (no index
/// condition) or a range of a non-unique one — unless listed in
/// [`ALLOWED_FILTERS`] with the reason — nor scan a growing table whole
/// (unless listed in [`WHOLE_TABLE_STATEMENTS`]).
#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_generic_plans_on_an_empty_store_use_the_right_index() {
    on_a_fresh_postgres_database(|conn| {
        let c = conn.client();
        c.batch_execute("SET plan_cache_mode = force_generic_plan")
            .expect("set");
        let unique: Vec<String> = c
            .query(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indisunique",
                &[],
            )
            .expect("unique indexes")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let columns: BTreeMap<String, Vec<String>> = c
            .query(
                "SELECT i.indexrelid::regclass::text, \
                   array_agg(a.attname::text ORDER BY k.ord) \
                 FROM pg_index i \
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 JOIN pg_namespace n ON n.oid = (SELECT relnamespace FROM pg_class WHERE oid = i.indrelid) \
                 WHERE n.nspname = 'public' GROUP BY i.indexrelid",
                &[],
            )
            .expect("index columns")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let (stmts, _) = statements();
        let mut failures = Vec::new();
        for s in stmts.iter().filter(|s| s.only != Only::Sqlite) {
            if s.sql.starts_with("CREATE ") || s.sql.starts_with("ALTER ") {
                continue;
            }
            let sql = crate::sql::to_postgres(&s.sql);
            let params = c.prepare(&sql).expect("prepares").params().len();
            c.batch_execute(&format!("PREPARE kx_plan AS {sql}"))
                .expect("prepare");
            let explain = if params == 0 {
                "EXPLAIN EXECUTE kx_plan".to_owned()
            } else {
                format!(
                    "EXPLAIN EXECUTE kx_plan({})",
                    vec!["NULL"; params].join(", ")
                )
            };
            let plan: Vec<String> = c
                .query(&explain, &[])
                .expect("explain")
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            c.batch_execute("DEALLOCATE kx_plan").expect("deallocate");
            let bad = filtered_index_scan(&plan, &unique)
                .or_else(|| skipped_index_column(&plan, &columns))
                .or_else(|| {
                    scanned_growing_table(&plan).filter(|_| {
                        !WHOLE_TABLE_STATEMENTS
                            .iter()
                            .any(|(start, _)| s.sql.starts_with(start) || s.at.starts_with(start))
                    })
                });
            if let Some(bad) = bad {
                failures.push(format!(
                    "{}: {bad}\n    {sql}\n    {}",
                    s.at,
                    plan.join("\n    ")
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} statements read more than their keys under a generic plan on an empty store:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

/// (index, filter) pairs allowed, each for its reason:
/// - every delivery of a webhook is in the webhook's namespace, so that
///   filter narrows nothing the index condition has not;
/// - a listing's optional filters (state, kind, status, since) are checked
///   while it walks its keyset order, as any filtered keyset listing;
/// - an update of one running job walks the partial index of running jobs'
///   leases (its predicate is implied): bounded by how many jobs run at
///   once, and the batched completions' plans rely on that index (without
///   it, a generic plan scans the whole jobs table). Batched statements
///   that join on the key by plan rather than by chance are the fix.
const ALLOWED_FILTERS: &[(&str, &str)] = &[
    (
        "webhook_deliveries_webhook_id_event_seq_key",
        "Filter: (namespace = $2)",
    ),
    // listings with optional filters walk their keyset order until a page
    // matches: the page plus what the filters skip, as any keyset listing
    (
        "webhook_deliveries_webhook_id_event_seq_key",
        "Filter: ((($5 IS NULL) OR (created_at >= $5)) AND (namespace = $2) AND (($4 IS NULL) OR ($4 ~~ (('%,'::text || state) || ',%'::text))))",
    ),
    (
        "jobs_listing",
        "Filter: ((($3 IS NULL) OR (state = $3)) AND (($4 IS NULL) OR (kind = $4)))",
    ),
    ("runs_namespace", "Filter: (($3 IS NULL) OR (status = $3))"),
    ("jobs_leases", "Filter: ((id = $1) AND (attempt = $2))"),
    (
        "jobs_leases",
        "Filter: ((id = $1) AND (state = 'running'::text) AND (attempt = $4))",
    ),
    (
        "jobs_leases",
        "Filter: ((id = $1) AND (attempt = $2) AND (state = 'running'::text))",
    ),
];

/// Tables that grow with use: reading one whole is a cost that grows too.
const GROWING_TABLES: &[&str] = &[
    "artifacts",
    "revisions",
    "audit_log",
    "outbox",
    "jobs",
    "job_attempts",
    "webhook_deliveries",
    "webhook_attempts",
];

/// Statements (by their start, or by where they are) that read a growing
/// table whole on purpose, each with the reason.
const WHOLE_TABLE_STATEMENTS: &[(&str, &str)] = &[
    ("src/check.rs", "verify reads every row"),
    (
        "SELECT kind, state, count(*) FROM jobs",
        "job statistics count every job",
    ),
    (
        "DELETE FROM jobs WHERE id < ",
        "pruning: a range of old jobs, at most hourly",
    ),
    (
        "DELETE FROM webhook_deliveries WHERE id < ",
        "pruning: a range of old deliveries, at most hourly",
    ),
    (
        "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE id < ",
        "pruning: the attempts of a range of old deliveries, at most hourly",
    ),
    (
        "SELECT count(*), max(seq) FROM outbox",
        "pruning the outbox",
    ),
    ("DELETE FROM outbox WHERE seq <= ", "pruning the outbox"),
];

/// The first sequential scan of a growing table in a plan.
fn scanned_growing_table(plan: &[String]) -> Option<String> {
    plan.iter().find_map(|line| {
        let t = line.trim_start().trim_start_matches("->").trim_start();
        let table = t.strip_prefix("Seq Scan on ")?.split_whitespace().next()?;
        GROWING_TABLES.contains(&table).then(|| t.to_owned())
    })
}

/// The first index scan of a plan that compares a parameter in its filter
/// (`Filter: (… = $2)`) while walking the whole index (no `Index Cond`) or
/// a range of a non-unique index; as its node and filter lines.
fn filtered_index_scan(plan: &[String], unique: &[String]) -> Option<String> {
    let mut node: Option<&str> = None;
    let mut has_cond = false;
    for line in plan {
        let t = line.trim_start().trim_start_matches("->").trim_start();
        if line.contains("->") || node.is_none() {
            node = Some(t);
            has_cond = false;
            continue;
        }
        has_cond |= t.starts_with("Index Cond:");
        let Some(n) = node.filter(|n| n.contains("Index Scan") || n.contains("Index Only Scan"))
        else {
            continue;
        };
        let index = n
            .split_once(" using ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_default();
        let compares_a_parameter = t
            .match_indices(" = $")
            .any(|(i, _)| t[i + 4..].starts_with(|c: char| c.is_ascii_digit()));
        let walks = !has_cond || !unique.iter().any(|u| u == index);
        if t.starts_with("Filter:")
            && compares_a_parameter
            && walks
            && !ALLOWED_FILTERS.contains(&(index, t))
        {
            return Some(format!("{n} / {t}"));
        }
    }
    None
}

/// The first index scan of a plan whose condition constrains a column of
/// the index after one it leaves free (`(namespace = $1) AND (name = $3)`
/// on `(namespace, collection_id, name)`): it walks every entry under the
/// constrained prefix; as its node and condition lines.
fn skipped_index_column(
    plan: &[String],
    columns: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    let mut index: Option<(&str, &str)> = None;
    for line in plan {
        let t = line.trim_start().trim_start_matches("->").trim_start();
        if line.contains("->") || index.is_none() {
            index = t
                .split_once(" using ")
                .or_else(|| t.split_once("Bitmap Index Scan on "))
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(|name| (t, name))
                .or(Some((t, "")));
            continue;
        }
        let (Some((node, name)), Some(cond)) = (index, t.strip_prefix("Index Cond: ")) else {
            continue;
        };
        let Some(cols) = columns.get(name) else {
            continue;
        };
        let constrained = |col: &str| {
            cond.match_indices(col)
                .any(|(i, _)| cond[..i].ends_with('(') && cond[i + col.len()..].starts_with(' '))
        };
        let free = cols.iter().position(|c| !constrained(c));
        if let Some(free) = free
            && cols[free..].iter().any(|c| constrained(c))
        {
            return Some(format!("{node} / {t} (leaves {} free)", cols[free]));
        }
    }
    None
}

/// Runs `f` on a migrated database of its own (dropped after); does
/// nothing without a test server.
fn on_a_fresh_postgres_database(f: impl FnOnce(&mut crate::postgres::Conn)) {
    let Some(db) = crate::testsuite::PgTestDatabase::create() else {
        return;
    };
    let client = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    let mut conn = crate::postgres::Conn::new(client);
    crate::postgres::schema::migrate(&mut conn, true).expect("migrate");
    f(&mut conn);
}
