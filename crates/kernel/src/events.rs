//! Reading the change feed as a caller (O5): pages of outbox events after a
//! cursor, filtered by type patterns and collection, and — the part that
//! matters — only events about what the caller may read (X2). A domain
//! says whether an event about one of its things is visible
//! ([`EventVisibility`]); the kernel decides for its own things (runs,
//! jobs, keys, grants, denials) and refuses what nobody claims.
//!
//! Something the caller may not read is indistinguishable from something
//! that does not exist: hidden events are skipped without a trace but the
//! page's cursor still moves past them, so a reader never re-reads them
//! and learns no count.

use kontextual_model::{OutboxEvent, TypePattern};

use crate::{Caller, Error, Kernel, Permission, Resource, Result};

/// Whether a caller may see an event about something a domain owns.
pub trait EventVisibility: Send + Sync {
    /// `Some(visible)` when the event is about something this domain owns
    /// (an artifact, a collection, a relation); `None` when it is not.
    /// Called only for events in the caller's namespace, and only for
    /// callers with a key (the local administrator sees everything).
    fn event_visible(&self, caller: &Caller, event: &OutboxEvent) -> Option<bool>;
}

/// The most events one page may hold.
pub const MAX_EVENTS_PAGE: u32 = 1000;
/// The default page size.
pub const DEFAULT_EVENTS_PAGE: u32 = 100;
/// The most events one page examines (visible or not) before it returns,
/// so a reader who may see little cannot make one request scan the feed.
pub const EVENTS_SCAN_BUDGET: u32 = 10_000;
const BATCH: u32 = 500;

/// What a reader asks for.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Events after this seq (0: from the start).
    pub after: u64,
    /// Type patterns (empty: every type).
    pub types: Vec<TypePattern>,
    /// Only events about something in this collection.
    pub collection: Option<String>,
    /// Page size (0: the default; at most [`MAX_EVENTS_PAGE`]).
    pub limit: u32,
}

/// One page of visible events.
#[derive(Clone, Debug)]
pub struct EventPage {
    pub events: Vec<OutboxEvent>,
    /// Where to continue: the last seq this page examined (at least
    /// `after`). Moves past hidden and filtered events too.
    pub next_after: u64,
    /// The store's id (the CloudEvents `source` names it).
    pub store_id: String,
}

/// The collection an event is about, when it is about something in one:
/// its payload's `collection` member.
pub fn event_collection(event: &OutboxEvent) -> Option<&str> {
    event.draft.payload.get("collection")?.as_str()
}

/// Types only an administrator of the namespace may follow.
const ADMIN_FAMILIES: &[&str] = &["key.", "grant.", "clearance.", "policy.", "webhook."];

impl Kernel {
    /// A page of the events `caller` may see after `q.after`. A cursor
    /// (other than 0, "from the oldest kept") older than what retention
    /// pruned is refused (`conflict`), naming
    /// the oldest cursor that still is complete, so a follower never
    /// misses events silently; so is one past the newest event.
    pub fn events_page(
        &self,
        caller: &Caller,
        q: &EventQuery,
        domains: &dyn EventVisibility,
    ) -> Result<EventPage> {
        if let Some(scopes) = &caller.scopes
            && scopes.is_empty()
        {
            return Err(Error::Denied {
                actor: caller.actor.to_string(),
                permission: Permission::Read.as_str(),
                target: "the event feed".to_owned(),
            });
        }
        let feed = self.store().feed();
        let pruned = feed.pruned_through()?;
        // 0 asks for "from the oldest kept": nothing to lose there
        if q.after > 0 && q.after < pruned {
            return Err(Error::Store(kontextual_store::StoreError::Refused {
                what: format!("event cursor {}", q.after),
                why: format!(
                    "events through seq {pruned} were deleted by retention; \
                     continue from after={pruned} (what came before is gone) or resynchronise"
                ),
            }));
        }
        let position = feed.position()?;
        // A cursor past the newest event was not made by this store (or
        // was made before a restore): refused, not an empty page that
        // looks like "nothing happened" forever.
        if q.after > position.last_seq {
            return Err(Error::Store(kontextual_store::StoreError::Refused {
                what: format!("event cursor {}", q.after),
                why: format!(
                    "the newest event is seq {}: the cursor comes from another store or from \
                     before a restore; continue from after={} or resynchronise",
                    position.last_seq, position.last_seq
                ),
            }));
        }
        let store_id = position.store_id;
        let limit = match q.limit {
            0 => DEFAULT_EVENTS_PAGE,
            n => n.min(MAX_EVENTS_PAGE),
        };
        let mut out = Vec::new();
        let mut cursor = q.after;
        let mut examined = 0u32;
        'scan: while examined < EVENTS_SCAN_BUDGET {
            let batch = feed.events(cursor, BATCH)?;
            if batch.is_empty() {
                break;
            }
            for e in batch {
                examined += 1;
                let seq = e.seq;
                if self.event_visible(caller, &e, q, domains) {
                    out.push(e);
                }
                cursor = seq;
                if out.len() as u32 >= limit || examined >= EVENTS_SCAN_BUDGET {
                    break 'scan;
                }
            }
        }
        Ok(EventPage {
            events: out,
            next_after: cursor,
            store_id,
        })
    }

    /// Filters first (cheap), then visibility.
    fn event_visible(
        &self,
        caller: &Caller,
        e: &OutboxEvent,
        q: &EventQuery,
        domains: &dyn EventVisibility,
    ) -> bool {
        if e.namespace != caller.namespace || !TypePattern::any_matches(&q.types, &e.draft.kind) {
            return false;
        }
        if let Some(c) = &q.collection
            && event_collection(e) != Some(c.as_str())
        {
            return false;
        }
        self.event_visible_to(caller, e, domains)
    }

    /// The read rule for one event (X2), without a reader's filters: the
    /// caller's namespace, then the domain that owns what the event is
    /// about, else the kernel's own rules. The feed's pages and the webhook
    /// dispatcher (for a webhook's creator) both ask this.
    pub fn event_visible_to(
        &self,
        caller: &Caller,
        e: &OutboxEvent,
        domains: &dyn EventVisibility,
    ) -> bool {
        if e.namespace != caller.namespace {
            return false;
        }
        if caller.scopes.is_none() {
            return true;
        }
        if let Some(v) = domains.event_visible(caller, e) {
            return v;
        }
        let kind = e.draft.kind.as_str();
        if ADMIN_FAMILIES.iter().any(|f| kind.starts_with(f)) {
            return self.can(
                caller,
                Permission::Admin,
                &Resource::Namespace("the namespace"),
            );
        }
        // runs, jobs, exports, context packages, imports: things of the
        // whole namespace, as their listings are
        self.can(
            caller,
            Permission::Read,
            &Resource::Namespace("the namespace"),
        )
    }
}
