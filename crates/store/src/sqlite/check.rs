//! `verify` on SQLite: one read transaction (a consistent snapshot), the
//! engine's own checks (`PRAGMA integrity_check`, `foreign_key_check`),
//! then the store's checks, written once in `crate::check`.

use kontextual_model::ChainHead;
use kontextual_model::audit::ChainReport;
use rusqlite::Connection;

use super::{SqliteBackend, sql_err};
use crate::Result;
use crate::check::{Recorded, problem};
use crate::port::{CheckReport, Problem, ProblemCategory};
use crate::sql::Tx;

/// Runs `f` inside one read transaction. The head kept outside the
/// database is read *before* the snapshot begins: it is written after each
/// commit, so it can never be ahead of the snapshot (reading it later could
/// see a newer head than the snapshot and cry "truncated" while writers run).
fn in_snapshot<T>(
    backend: &SqliteBackend,
    f: impl FnOnce(&Connection, Recorded) -> Result<T>,
) -> Result<T> {
    let recorded = crate::head_copy::recorded(backend.head_file().as_deref());
    backend.read(|conn| {
        conn.execute_batch("BEGIN").map_err(sql_err)?;
        // a first read pins the snapshot now, after the head file was read
        let _ = crate::audit::head(&mut Tx::Sqlite(conn));
        let out = f(conn, recorded);
        let _ = conn.execute_batch("COMMIT");
        out
    })
}

pub(super) fn run(backend: &SqliteBackend, expect: Option<ChainHead>) -> Result<CheckReport> {
    in_snapshot(backend, |conn, recorded| {
        let problems = engine_problems(conn)?;
        crate::check::run(&mut Tx::Sqlite(conn), expect, recorded, problems)
    })
}

pub(super) fn verify_audit(
    backend: &SqliteBackend,
    expect: Option<ChainHead>,
) -> Result<(ChainReport, Option<String>)> {
    in_snapshot(backend, |conn, recorded| {
        crate::check::verify_chain(&mut Tx::Sqlite(conn), expect, recorded)
    })
}

/// SQLite's own view of the file: page-level integrity and foreign keys.
fn engine_problems(conn: &Connection) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(sql_err)?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql_err)?;
    for line in lines {
        let line = line.map_err(sql_err)?;
        if line != "ok" {
            problems.push(problem(ProblemCategory::Corruption, "database", line));
        }
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check").map_err(sql_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(sql_err)?;
    for row in rows {
        let (table, rowid, parent) = row.map_err(sql_err)?;
        problems.push(problem(
            ProblemCategory::MissingReference,
            format!(
                "{table} row {}",
                rowid.map_or("?".to_owned(), |r| r.to_string())
            ),
            format!("points at a missing {parent} record"),
        ));
    }
    Ok(problems)
}
