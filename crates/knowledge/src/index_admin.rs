//! `index status` and `index rebuild`: the projection's health, for operators.

use kontextual_index::{Access, SearchIndex};
use kontextual_store::{Problem, ProblemCategory};
use serde::Serialize;

use crate::error::index_err;
use crate::projection::CatchUp;
use crate::{Caller, Knowledge, Permission, Resource, Result};

/// The search projection compared with the store.
#[derive(Clone, Debug, Serialize)]
pub struct IndexStatus {
    /// `ok`, `lagging` (changes not applied yet) or `diverged` (counts differ
    /// after catch-up: rebuild).
    pub health: &'static str,
    pub path: String,
    /// Whether this process owns the index (no other process holds its lock).
    pub owner: bool,
    pub indexed_artifacts: u64,
    pub indexed_sections: u64,
    pub store_live_artifacts: u64,
    pub applied_seq: u64,
    pub store_seq: u64,
    /// Outbox events not applied yet.
    pub lag: u64,
    pub last_commit: Option<String>,
    pub segments: usize,
    pub size_bytes: u64,
    /// What the last catch-up (done by this command, as owner) applied.
    pub caught_up: Option<CatchUp>,
    /// Artifacts whose text could not be extracted when this process
    /// indexed them: findable by name and metadata only.
    pub unextractable: Vec<Unextractable>,
}

/// An artifact indexed without its text, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Unextractable {
    pub artifact_id: kontextual_model::ArtifactId,
    #[serde(rename = "ref")]
    pub reference: String,
    pub reason: String,
}

impl Knowledge {
    /// Applies pending changes to the search index when this process owns
    /// it (a server's follower calls this on a timer). System maintenance:
    /// it exposes nothing and takes no caller.
    pub fn index_follow(&self) -> Result<CatchUp> {
        self.projection()?.catch_up()
    }

    /// Whether the store answers and the search index can be opened.
    pub fn ready(&self) -> Result<()> {
        self.store().feed().position()?;
        let p = self.projection()?;
        if let Some(why) = p.trouble() {
            return Err(index_err(kontextual_index::IndexError::Unavailable(
                format!(
                    "its writer failed ({why}); searches answer from the last commit until changes can be applied again"
                ),
            )));
        }
        Ok(())
    }

    /// Read-only integrity check of the search index for `verify`: damaged
    /// files, another store's index, or documents that disagree with the
    /// store while the index claims to be current. A missing index is fine
    /// (it is built on first use).
    pub(crate) fn index_problems(&self) -> Vec<Problem> {
        let Some(dir) = self
            .data_dir
            .as_ref()
            .map(|d| crate::projection::index_dir(d))
        else {
            return Vec::new();
        };
        if !dir.join("meta.json").exists() {
            return Vec::new();
        }
        let problem = |detail: String| Problem {
            category: ProblemCategory::SearchIndex,
            subject: format!("search index {}", dir.display()),
            detail: format!("{detail}; `kontextual index rebuild` rebuilds it from the store"),
        };
        let idx = match SearchIndex::open(&dir, Access::ReadOnly, 1) {
            Ok((idx, _)) => idx,
            Err(e) => return vec![problem(format!("cannot be opened: {e}"))],
        };
        let mut out = Vec::new();
        if let Some(p) = self.loaded_projection() {
            for (id, reference, why) in p.unextractable() {
                out.push(Problem {
                    category: ProblemCategory::SearchIndex,
                    subject: format!("artifact {reference} ({id})"),
                    detail: format!(
                        "its text could not be extracted ({why}); it is searchable by name and metadata only"
                    ),
                });
            }
        }
        match idx.validate() {
            Ok(bad) if !bad.is_empty() => {
                out.push(problem(format!("damaged files: {}", bad.join(", "))))
            }
            Err(e) => out.push(problem(format!("cannot be validated: {e}"))),
            Ok(_) => {}
        }
        let (Ok(stats), Ok(pos), Ok(live)) = (
            idx.stats(),
            self.store().feed().position(),
            self.live_unquarantined(),
        ) else {
            return out;
        };
        match &stats.checkpoint {
            Some(c) if c.store_id != pos.store_id => {
                out.push(problem("it was built from another store".to_owned()))
            }
            Some(c) if c.applied_seq > pos.last_seq => {
                out.push(problem("it is ahead of the store".to_owned()))
            }
            Some(c) if c.applied_seq == pos.last_seq && stats.artifacts != live => {
                out.push(problem(format!(
                    "it holds {} artifacts but the store has {live} live ones that are not quarantined",
                    stats.artifacts
                )))
            }
            _ => {}
        }
        out
    }

    /// Catches up (when this process owns the index) and reports.
    pub fn index_status(&self, caller: &Caller) -> Result<IndexStatus> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("search index"),
        )?;
        let p = self.projection()?;
        let caught_up = if p.is_owner() {
            Some(p.catch_up()?)
        } else {
            p.index().reload().map_err(index_err)?;
            None
        };
        self.index_report(&p, caught_up)
    }

    /// Rebuilds the index from the store (needs ownership).
    pub fn index_rebuild(&self, caller: &Caller) -> Result<IndexStatus> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("search index"),
        )?;
        let p = self.projection()?;
        let done = p.rebuild()?;
        self.index_report(&p, Some(done))
    }

    fn index_report(
        &self,
        p: &crate::projection::Projection,
        caught_up: Option<CatchUp>,
    ) -> Result<IndexStatus> {
        let stats = p.index().stats().map_err(index_err)?;
        let pos = self.store().feed().position()?;
        let live = self.live_unquarantined()?;
        let applied = stats.checkpoint.as_ref().map_or(0, |c| c.applied_seq);
        let lag = pos.last_seq.saturating_sub(applied);
        let health = if lag > 0 {
            "lagging"
        } else if stats.artifacts != live {
            "diverged"
        } else {
            "ok"
        };
        Ok(IndexStatus {
            health,
            path: p.index().path().display().to_string(),
            owner: p.is_owner(),
            indexed_artifacts: stats.artifacts,
            indexed_sections: stats.sections,
            store_live_artifacts: live,
            applied_seq: applied,
            store_seq: pos.last_seq,
            lag,
            last_commit: stats.checkpoint.map(|c| c.committed_at),
            segments: stats.segments,
            size_bytes: stats.size_bytes,
            caught_up,
            unextractable: p
                .unextractable()
                .into_iter()
                .map(|(artifact_id, reference, reason)| Unextractable {
                    artifact_id,
                    reference,
                    reason,
                })
                .collect(),
        })
    }
}

/// The search index as a feed consumer: it follows the change feed when
/// this process owns the index.
pub struct SearchIndexFollower;

impl<H: crate::KnowledgeHost> crate::FeedConsumer<H> for SearchIndexFollower {
    fn name(&self) -> &str {
        crate::projection::CONSUMER
    }

    /// The index lives in this process's data directory.
    fn local(&self) -> bool {
        true
    }

    fn follow(&self, host: &H) -> Result<()> {
        host.knowledge().index_follow().map(|_| ())
    }
}
