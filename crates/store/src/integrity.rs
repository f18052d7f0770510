//! What `verify` proves with the audit chain beyond the chain itself (X3):
//! every row that carries history or authority — revisions (every field),
//! artifacts' current state, relations, API keys, grants, clearances, legal
//! holds and quarantines — is what the latest audit record about it vouches
//! for. An edit, insertion or deletion made behind the chain's back (with
//! SQL, say) is named here.
//!
//! Written once for every engine: an engine hands its consistent snapshot
//! over as an [`AuditedRows`] and this module decides.

use std::collections::HashMap;

use kontextual_model::change::{
    ORIGIN_HASH, ROW_HASH, RevisionFacts, artifact_fingerprint, clearance_fingerprint,
    grant_fingerprint, key_fingerprint, mark_fingerprint, relation_fingerprint,
    revision_fingerprint, revision_origin_fingerprint,
};
use kontextual_model::{
    ApiKey, Artifact, ArtifactId, AuditRecord, Clearance, Grant, Hold, Namespace, Relation,
    Revision,
};

use crate::Result;
use crate::port::{Page, PageRequest, Problem, ProblemCategory};

/// The namespaces any audited table uses; engines run this same statement.
pub const NAMESPACES_SQL: &str = "SELECT namespace FROM collections UNION SELECT namespace FROM relations \
     UNION SELECT namespace FROM api_keys UNION SELECT namespace FROM grants \
     UNION SELECT namespace FROM clearances UNION SELECT namespace FROM holds \
     UNION SELECT namespace FROM quarantines ORDER BY 1";

/// Reads of one consistent snapshot of a store, for [`cross_check`]; each
/// is one of the engine's ordinary reads.
pub trait AuditedRows {
    /// Audit records after `after`, in sequence order, at most `limit`.
    fn audit_page(&mut self, after: u64, limit: u32) -> Result<Vec<AuditRecord>>;
    fn revision(&mut self, ns: &Namespace, id: ArtifactId, rev: u64) -> Result<Option<Revision>>;
    fn artifact(&mut self, ns: &Namespace, id: ArtifactId) -> Result<Option<Artifact>>;
    fn revision_count(&mut self) -> Result<u64>;
    /// [`NAMESPACES_SQL`].
    fn namespaces(&mut self) -> Result<Vec<Namespace>>;
    /// A page of a namespace's relations, deleted ones too.
    fn relations(&mut self, ns: &Namespace, page: &PageRequest) -> Result<Page<Relation>>;
    /// A page of a namespace's API keys (secret hashes may be left out).
    fn keys(&mut self, ns: &Namespace, page: &PageRequest) -> Result<Page<ApiKey>>;
    /// One API key with its secret hash.
    fn key(&mut self, id: &str) -> Result<Option<ApiKey>>;
    fn grants(&mut self, ns: &Namespace) -> Result<Vec<Grant>>;
    fn clearances(&mut self, ns: &Namespace) -> Result<Vec<Clearance>>;
    fn holds(&mut self, ns: &Namespace) -> Result<Vec<Hold>>;
    fn quarantines(&mut self, ns: &Namespace) -> Result<Vec<Hold>>;
}

/// Every vouched row of the snapshot with its key and fingerprint.
fn stored_rows(src: &mut dyn AuditedRows) -> Result<Vec<(RowKey, String)>> {
    let mut rows: Vec<(RowKey, String)> = Vec::new();
    let all = PageRequest {
        after: None,
        limit: 1000,
    };
    for ns in src.namespaces()? {
        let mut page = all.clone();
        loop {
            let p = src.relations(&ns, &page)?;
            for r in &p.items {
                rows.push((RowKey::Relation(r.id.to_string()), relation_fingerprint(r)));
            }
            match p.next {
                Some(n) => page.after = Some(n),
                None => break,
            }
        }
        let mut page = all.clone();
        loop {
            let p = src.keys(&ns, &page)?;
            for k in &p.items {
                // listings leave the secret hash out; read each key whole
                if let Some(k) = src.key(&k.id)? {
                    let fp = key_fingerprint(&k, k.secret_hash.as_ref());
                    rows.push((RowKey::Key(k.id.clone()), fp));
                }
            }
            match p.next {
                Some(n) => page.after = Some(n),
                None => break,
            }
        }
        for g in src.grants(&ns)? {
            rows.push((RowKey::Grant(g.id.to_string()), grant_fingerprint(&g)));
        }
        for c in src.clearances(&ns)? {
            let key = RowKey::Clearance(c.namespace.clone(), c.actor.to_string());
            rows.push((key, clearance_fingerprint(&c)));
        }
        for h in src.holds(&ns)? {
            let fp = mark_fingerprint("hold", &h);
            rows.push((RowKey::Hold(h.artifact_id.to_string()), fp));
        }
        for q in src.quarantines(&ns)? {
            let fp = mark_fingerprint("quarantine", &q);
            rows.push((RowKey::Quarantine(q.artifact_id.to_string()), fp));
        }
    }
    Ok(rows)
}

fn problem(category: ProblemCategory, subject: String, detail: String) -> Problem {
    Problem {
        category,
        subject,
        detail,
    }
}

/// What the chain last said about one row.
struct Vouched {
    seq: u64,
    /// The row's fingerprint after that record; `None`: the record removed
    /// the row (a deleted grant, a released hold).
    hash: Option<String>,
}

/// Which table a vouched row lives in, and its key there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RowKey {
    Relation(String),
    Key(String),
    Grant(String),
    Clearance(Namespace, String),
    Hold(String),
    Quarantine(String),
}

impl RowKey {
    fn describe(&self) -> String {
        match self {
            RowKey::Relation(id) => format!("relation {id}"),
            RowKey::Key(id) => format!("API key {id}"),
            RowKey::Grant(id) => format!("grant {id}"),
            RowKey::Clearance(ns, actor) => format!("clearance of {actor} in {ns}"),
            RowKey::Hold(id) => format!("legal hold on artifact {id}"),
            RowKey::Quarantine(id) => format!("quarantine of artifact {id}"),
        }
    }
}

/// The row an audit record speaks about, and whether the row remains.
fn vouched_row(rec: &AuditRecord) -> Option<(RowKey, bool)> {
    let d = &rec.draft;
    let id = d.target_id.clone();
    Some(match d.action.as_str() {
        "relation.create" | "relation.update" | "relation.delete" | "relation.import" => {
            (RowKey::Relation(id), true)
        }
        "key.create" | "key.revoke" => (RowKey::Key(id), true),
        "grant.create" => (RowKey::Grant(id), true),
        "grant.delete" => (RowKey::Grant(id), false),
        "clearance.set" => (RowKey::Clearance(rec.namespace.clone(), id), true),
        "hold.set" => (RowKey::Hold(id), true),
        "hold.release" => (RowKey::Hold(id), false),
        "artifact.quarantine" => (RowKey::Quarantine(id), true),
        "artifact.release" => (RowKey::Quarantine(id), false),
        _ => return None,
    })
}

fn detail_str<'a>(rec: &'a AuditRecord, member: &str) -> Option<&'a str> {
    rec.draft
        .detail
        .as_ref()
        .and_then(|v| v.get(member))
        .and_then(|v| v.as_str())
}

/// Checks every revision and every vouched row against the audit chain.
/// Returns how many revisions had an audit record.
pub fn cross_check(src: &mut dyn AuditedRows, problems: &mut Vec<Problem>) -> Result<u64> {
    let revisions = src.revision_count()?;
    let mut audited = 0u64;
    let mut vouched: HashMap<RowKey, Vouched> = HashMap::new();
    let mut after = 0;
    loop {
        let page = src.audit_page(after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for rec in &page {
            if let Some((key, remains)) = vouched_row(rec) {
                // Records older than row fingerprints vouch for existence
                // only; the latest record about a row is what counts.
                let hash = if remains {
                    Some(detail_str(rec, ROW_HASH).unwrap_or_default().to_owned())
                } else {
                    None
                };
                vouched.insert(key, Vouched { seq: rec.seq, hash });
                continue;
            }
            if check_revision(src, rec, problems)? {
                audited += 1;
            }
        }
    }
    if revisions > audited {
        problems.push(problem(
            ProblemCategory::AuditChain,
            "revisions".into(),
            format!(
                "{} revisions have no audit record (written outside Kontextual)",
                revisions - audited
            ),
        ));
    }
    let rows = stored_rows(src)?;
    for (key, fp) in rows {
        let subject = key.describe();
        match vouched.remove(&key) {
            None => problems.push(problem(
                ProblemCategory::AuditChain,
                subject,
                "has no audit record (written outside Kontextual)".into(),
            )),
            Some(Vouched { seq, hash: None }) => problems.push(problem(
                ProblemCategory::Corruption,
                subject,
                format!(
                    "was removed by audit record {seq} but is present (restored outside Kontextual)"
                ),
            )),
            Some(Vouched {
                seq,
                hash: Some(expected),
            }) => {
                if !expected.is_empty() && expected != fp {
                    problems.push(problem(
                        ProblemCategory::Corruption,
                        subject,
                        format!(
                            "differs from what audit record {seq} vouches for (edited outside Kontextual)"
                        ),
                    ));
                }
            }
        }
    }
    // What the chain says exists but no table holds.
    let mut missing: Vec<_> = vouched
        .into_iter()
        .filter_map(|(key, v)| v.hash.map(|_| (v.seq, key)))
        .collect();
    missing.sort_by_key(|(seq, _)| *seq);
    for (seq, key) in missing {
        problems.push(problem(
            ProblemCategory::MissingReference,
            key.describe(),
            format!("audited by record {seq} but missing (deleted outside Kontextual)"),
        ));
    }
    Ok(audited)
}

/// One audit record that may vouch for a revision: the revision's facts,
/// who made it, when, in which request and run, and the artifact's state.
/// Returns whether the record vouched for a revision.
fn check_revision(
    src: &mut dyn AuditedRows,
    rec: &AuditRecord,
    problems: &mut Vec<Problem>,
) -> Result<bool> {
    let d = &rec.draft;
    let (Some(rev), Some(expected)) = (d.revision, detail_str(rec, "revision_hash")) else {
        return Ok(false);
    };
    if d.target_kind != "artifact" {
        return Ok(false);
    }
    let subject = format!("artifact {} revision {rev}", d.target_id);
    let Ok(id) = d.target_id.parse::<ArtifactId>() else {
        problems.push(problem(
            ProblemCategory::AuditChain,
            subject,
            "audit record names no valid artifact id".into(),
        ));
        return Ok(true);
    };
    let edited = |seq: u64| {
        format!("differs from what audit record {seq} vouches for (edited outside Kontextual)")
    };
    match src.revision(&rec.namespace, id, rev)? {
        None => problems.push(problem(
            ProblemCategory::MissingReference,
            subject,
            format!("audited by record {} but missing from the history", rec.seq),
        )),
        Some(r) => {
            let facts_ok = revision_fingerprint(&RevisionFacts::of_revision(&r)) == expected;
            // Who, when, which request and run: an imported revision's
            // record carries them as a fingerprint (the record itself names
            // the importer); any other record *is* the origin.
            let origin_ok = match detail_str(rec, ORIGIN_HASH) {
                Some(origin) => revision_origin_fingerprint(&r) == origin,
                None if d.action == "artifact.import" => true, // before origin hashes
                None => {
                    r.actor == rec.actor
                        && r.correlation_id == rec.correlation_id
                        && r.run_id == rec.run_id
                        && r.created_at == rec.at
                }
            };
            if !facts_ok || !origin_ok {
                problems.push(problem(
                    ProblemCategory::Corruption,
                    subject,
                    edited(rec.seq),
                ));
            }
        }
    }
    // The artifact row must still be what its current revision made it.
    if let Some(state) = detail_str(rec, "artifact_hash") {
        match src.artifact(&rec.namespace, id)? {
            None => problems.push(problem(
                ProblemCategory::MissingReference,
                format!("artifact {}", d.target_id),
                format!(
                    "audited by record {} but missing (or moved to another namespace)",
                    rec.seq
                ),
            )),
            Some(a) if a.revision == rev && artifact_fingerprint(&a) != state => {
                problems.push(problem(
                    ProblemCategory::Corruption,
                    format!("artifact {}", d.target_id),
                    format!(
                        "its current state differs from what audit record {} vouches for (edited outside Kontextual)",
                        rec.seq
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(true)
}
