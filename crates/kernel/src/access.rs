//! The read access log (X2): every successful read and search is recorded,
//! cheaply — entries are buffered in memory and written in one batch when
//! the buffer fills, every few seconds, and when the services are dropped.
//! It is bookkeeping beside the audit chain, not part of it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kontextual_model::{AccessEntry, Actor};
use kontextual_store::{AccessOp, Op};

use crate::{Caller, Kernel, Permission, Resource, Result};

const FLUSH_AT: usize = 4096;
const FLUSH_EVERY: Duration = Duration::from_secs(2);

pub(crate) struct AccessBuffer {
    entries: Vec<AccessEntry>,
    flushed: Instant,
}

impl Default for AccessBuffer {
    fn default() -> Self {
        AccessBuffer {
            entries: Vec::new(),
            flushed: Instant::now(),
        }
    }
}

pub(crate) type AccessState = Mutex<AccessBuffer>;

impl Kernel {
    /// Records one read (`action` is `read` or `search`).
    pub fn record_access(&self, caller: &Caller, action: &str, target: String) {
        let due = {
            let mut b = self.access.lock().unwrap_or_else(|p| p.into_inner());
            b.entries.push(AccessEntry {
                seq: 0,
                at: kontextual_model::now(),
                namespace: caller.namespace.clone(),
                actor: caller.actor.clone(),
                key_id: caller.key_id.clone(),
                action: action.to_owned(),
                target,
                correlation_id: caller.correlation_id.to_string(),
            });
            if b.entries.len() >= FLUSH_AT || b.flushed.elapsed() >= FLUSH_EVERY {
                b.flushed = Instant::now();
                Some(std::mem::take(&mut b.entries))
            } else {
                None
            }
        };
        if let Some(entries) = due {
            self.write_access(entries);
        }
    }

    /// Writes buffered entries now (a server calls this on a timer and at
    /// shutdown; dropping the services does it too).
    pub fn flush_access_log(&self) {
        let entries = {
            let mut b = self.access.lock().unwrap_or_else(|p| p.into_inner());
            b.flushed = Instant::now();
            std::mem::take(&mut b.entries)
        };
        if !entries.is_empty() {
            self.write_access(entries);
        }
    }

    fn write_access(&self, entries: Vec<AccessEntry>) {
        let system = Caller::new(Actor::local_admin(), kontextual_model::Namespace::default());
        if let Err(e) = self.write(
            &system,
            vec![Op::Access(AccessOp::RecordAccess { entries })],
        ) && !crate::store_unavailable(&e, "writing the access log")
        {
            tracing::warn!(error = %e, "could not write the access log");
        }
    }

    /// Access log entries of the caller's namespace (admin).
    pub fn access_list(
        &self,
        caller: &Caller,
        actor: Option<&Actor>,
        since: Option<kontextual_model::Timestamp>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AccessEntry>> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("access log"),
        )?;
        self.flush_access_log();
        Ok(self
            .store()
            .access()
            .log(&caller.namespace, actor, since, after, limit)?)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // On a thread of its own: the last owner may be an async runtime
        // shutting down, and a blocking database client must not run there.
        let this = &*self;
        std::thread::scope(|s| {
            s.spawn(|| {
                this.flush_access_log();
                this.flush_key_uses();
            });
        });
    }
}
