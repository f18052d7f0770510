//! `index status` and `index rebuild`: the projection's health, for operators.

use serde::Serialize;

use crate::projection::CatchUp;
use crate::{Caller, Permission, Result, Services};

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
}

impl Services {
    /// Catches up (when this process owns the index) and reports.
    pub fn index_status(&self, caller: &Caller) -> Result<IndexStatus> {
        self.authorize(caller, Permission::Admin, "search index")?;
        let p = self.projection()?;
        let caught_up = if p.is_owner() {
            Some(p.catch_up()?)
        } else {
            p.index().reload()?;
            None
        };
        self.index_report(&p, caught_up)
    }

    /// Rebuilds the index from the store (needs ownership).
    pub fn index_rebuild(&self, caller: &Caller) -> Result<IndexStatus> {
        self.authorize(caller, Permission::Admin, "search index")?;
        let p = self.projection()?;
        let done = p.rebuild()?;
        self.index_report(&p, Some(done))
    }

    fn index_report(
        &self,
        p: &crate::projection::Projection,
        caught_up: Option<CatchUp>,
    ) -> Result<IndexStatus> {
        let stats = p.index().stats()?;
        let pos = self.store().feed_position()?;
        let live = self.store().status()?.artifacts_live;
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
        })
    }
}
