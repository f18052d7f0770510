//! Applying write batches: group commit, ops, and the audit/outbox append
//! that accompanies every change in the same transaction.

use kontextual_model::{ChainHead, Change, ChangeKind, Timestamp};
use std::sync::mpsc::SyncSender;

/// Where a caller waits for its batch's outcome.
type Reply = SyncSender<Result<Vec<Change>>>;

use rusqlite::Connection;

use super::read::{self};
use super::{WriteJob, sql_err};
use crate::port::WriteBatch;
use crate::sql::Tx;
use crate::{Result, StoreError};

/// [`commit_group_anchored`] without an anchor.
#[cfg(test)]
pub(super) fn commit_group(
    conn: &Connection,
    jobs: Vec<WriteJob>,
    busy_ms: u64,
    wipe_pending: &mut bool,
) -> Option<ChainHead> {
    commit_group_anchored(conn, jobs, busy_ms, wipe_pending, None).0
}

/// Commits a group of jobs in one transaction and answers each caller.
/// Returns the new audit head if anything was committed, and whether the
/// chain still held `anchor` (the head recorded outside the database) when
/// the group began. `wipe_pending` says a purge's WAL truncation has not
/// happened yet (readers were active); it is retried after every commit
/// until it succeeds.
pub(super) fn commit_group_anchored(
    conn: &Connection,
    jobs: Vec<WriteJob>,
    busy_ms: u64,
    wipe_pending: &mut bool,
    anchor: Option<&ChainHead>,
) -> (Option<ChainHead>, bool) {
    let mut jobs = jobs.into_iter();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = match sql_err(e) {
            StoreError::Locked { .. } => StoreError::Locked { waited_ms: busy_ms },
            other => other,
        };
        abort(conn, Vec::new(), jobs, e);
        return (None, true);
    }
    let mut head = match read::audit_head(conn) {
        Ok(h) => h,
        Err(e) => {
            abort(conn, Vec::new(), jobs, e);
            return (None, true);
        }
    };
    let start_head = head.clone();
    let anchor_held = match anchor {
        Some(a) => crate::head_copy::chain_holds(a, start_head.as_ref(), |seq| {
            crate::audit::hash_at(&mut Tx::Sqlite(conn), seq)
        })
        .unwrap_or(true),
        None => true,
    };
    let now = kontextual_model::now();
    // A lone batch needs no savepoint: if it fails, the whole transaction
    // rolls back (savepoints cost a sub-journal write per touched page).
    let isolate = jobs.len() > 1;
    let mut done: Vec<(Reply, Result<Vec<Change>>)> = Vec::new();
    while let Some(job) = jobs.next() {
        let saved = head.clone();
        let outcome = if isolate {
            conn.execute_batch("SAVEPOINT batch")
                .map_err(sql_err)
                .and_then(|_| apply_batch(conn, job.batch, &mut head, now))
        } else {
            apply_batch(conn, job.batch, &mut head, now)
        };
        match outcome {
            Ok(changes) => {
                if isolate && let Err(e) = conn.execute_batch("RELEASE batch") {
                    done.push((job.reply, Err(sql_err(e))));
                    let e = StoreError::Internal("releasing a savepoint failed".to_owned());
                    abort_all(conn, done, jobs, e);
                    return (None, true);
                }
                done.push((job.reply, Ok(changes)));
            }
            // SQLite itself rolled back the whole transaction (disk full, I/O
            // error, out of memory), or this was the only batch: nothing of
            // this group is committed, and every caller must hear so.
            Err(e) if !isolate || conn.is_autocommit() => {
                abort(
                    conn,
                    done.into_iter().map(|(r, _)| r).collect(),
                    jobs,
                    e.duplicate(),
                );
                let _ = job.reply.send(Err(e));
                return (None, true);
            }
            Err(e) => {
                if let Err(e2) = conn.execute_batch("ROLLBACK TO batch; RELEASE batch") {
                    done.push((job.reply, Err(e)));
                    abort_all(conn, done, jobs, sql_err(e2));
                    return (None, true);
                }
                head = saved;
                done.push((job.reply, Err(e)));
            }
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        abort_all(conn, done, jobs, sql_err(e));
        return (None, true);
    }
    let purged = done.iter().any(|(_, r)| {
        r.as_ref().is_ok_and(|cs| {
            cs.iter().any(|c| {
                matches!(
                    c,
                    Change::Artifact {
                        kind: ChangeKind::Purged,
                        ..
                    }
                )
            })
        })
    });
    if purged || *wipe_pending {
        // Old WAL frames may still hold purged bytes (secure_delete zeroes the
        // pages, not their earlier copies): checkpoint and truncate the WAL
        // before the caller hears that the content is gone. A reader holding
        // an old snapshot prevents that; then it is retried after later commits.
        match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(0) => *wipe_pending = false,
            Ok(_) => {
                *wipe_pending = true;
                tracing::warn!(
                    "purged content may remain in the WAL until active readers finish; retrying after the next commit"
                );
            }
            Err(e) => {
                *wipe_pending = true;
                tracing::warn!(error = %e, "WAL checkpoint after purge failed");
            }
        }
    }
    for (reply, result) in done {
        let _ = reply.send(result);
    }
    (if head != start_head { head } else { None }, anchor_held)
}

/// Rolls back whatever is open and fails every caller of the group: those
/// already applied (their work is undone) and those not reached yet.
fn abort(
    conn: &Connection,
    applied: Vec<Reply>,
    rest: std::vec::IntoIter<WriteJob>,
    e: StoreError,
) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for r in applied {
        let _ = r.send(Err(e.duplicate()));
    }
    for j in rest {
        let _ = j.reply.send(Err(e.duplicate()));
    }
}

/// Like [`abort`], keeping a failed batch's own error for its caller.
fn abort_all(
    conn: &Connection,
    done: Vec<(Reply, Result<Vec<Change>>)>,
    rest: std::vec::IntoIter<WriteJob>,
    e: StoreError,
) {
    let mut applied = Vec::new();
    for (reply, result) in done {
        match result {
            Err(own) => {
                let _ = reply.send(Err(own));
            }
            Ok(_) => applied.push(reply),
        }
    }
    abort(conn, applied, rest, e);
}

fn apply_batch(
    conn: &Connection,
    batch: WriteBatch,
    head: &mut Option<ChainHead>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    crate::apply::apply(&mut Tx::Sqlite(conn), batch, head, now, true)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::ErrorKind;
    use crate::port::{Content, KnowledgeOp, Op, PutArtifact, WriteContext};
    use kontextual_model::{Actor, ArtifactName, CollectionName, CorrelationId, Namespace};

    fn ctx() -> WriteContext {
        WriteContext {
            namespace: Namespace::default(),
            actor: Actor::local_admin(),
            correlation_id: CorrelationId::new(),
            run_id: None,
        }
    }

    fn job(ops: Vec<Op>) -> (WriteJob, mpsc::Receiver<Result<Vec<Change>>>) {
        let (reply, rx) = mpsc::sync_channel(1);
        (
            WriteJob {
                batch: WriteBatch { ctx: ctx(), ops },
                reply,
            },
            rx,
        )
    }

    fn put(name: &str, bytes: Vec<u8>) -> Op {
        Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
            CollectionName::new("h").unwrap(),
            ArtifactName::new(name).unwrap(),
            Content::Bytes(bytes),
        )))
    }

    /// K2: when SQLite rolls back the whole transaction (here: the disk is
    /// full), no batch of the group is committed and every caller is told so.
    #[test]
    fn k2_a_whole_group_rollback_fails_every_caller() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, None, true).unwrap();
        let mut wipe = false;
        let (j, rx) = job(vec![Op::Knowledge(KnowledgeOp::CreateCollection {
            name: CollectionName::new("h").unwrap(),
            description: String::new(),
            if_absent: false,
        })]);
        let head = commit_group(&conn, vec![j], 0, &mut wipe);
        assert!(rx.recv().unwrap().is_ok());
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch(&format!("PRAGMA max_page_count = {}", pages + 40))
            .unwrap();
        let (a, ra) = job(vec![put("a.md", b"small a".to_vec())]);
        let (b, rb) = job(vec![put("b.bin", vec![7u8; 4 << 20])]);
        let (c, rc) = job(vec![put("c.md", b"small c".to_vec())]);
        assert_eq!(commit_group(&conn, vec![a, b, c], 0, &mut wipe), None);
        let eb = rb.recv().unwrap().unwrap_err();
        assert_eq!(eb.kind(), ErrorKind::Io, "{eb}");
        assert!(eb.to_string().contains("disk is full"), "{eb}");
        assert!(
            ra.recv().unwrap().is_err(),
            "a was rolled back with the group"
        );
        assert!(rc.recv().unwrap().is_err(), "c never ran in a transaction");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM artifacts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "nothing of the group is visible");
        assert_eq!(read::audit_head(&conn).unwrap(), head);
        assert!(conn.is_autocommit());
        // the writer carries on afterwards
        let (d, rd) = job(vec![put("d.md", b"d".to_vec())]);
        commit_group(&conn, vec![d], 0, &mut wipe);
        assert!(rd.recv().unwrap().is_ok());
    }
}
