//! Which events about knowledge a caller may see (O5, X2): the same read
//! rule search and every listing apply. An event about an artifact is
//! visible when the artifact is readable now (grant, clearance,
//! quarantine) and the event's own classification is cleared; one about a
//! relation when both its artifacts are; one about a collection, or a run
//! in one, when the caller may read the collection.

use kontextual_kernel::{
    Caller, EventPage, EventQuery, EventVisibility, Permission, Resource, Result,
};
use kontextual_model::{ArtifactId, Classification, OutboxEvent};
use kontextual_store::ArtifactKey;

use crate::Knowledge;

impl Knowledge {
    /// A page of the events `caller` may see (`Kernel::events_page` with
    /// this domain's visibility).
    pub fn event_page(&self, caller: &Caller, q: &EventQuery) -> Result<EventPage> {
        self.kernel().events_page(caller, q, self)
    }

    /// Whether the artifact `id` is readable by `caller`; `fallback`
    /// (collection, name) decides for an artifact that no longer exists
    /// (purged rows are gone): the grant on its name alone.
    fn artifact_visible(&self, caller: &Caller, id: &str, fallback: Option<(&str, &str)>) -> bool {
        let Ok(id) = id.parse::<uuid::Uuid>() else {
            return false;
        };
        match self
            .store()
            .knowledge()
            .artifact(&caller.namespace, &ArtifactKey::Id(ArtifactId(id)))
        {
            Ok(Some(a)) => self.readable(caller, &a),
            Ok(None) => fallback.is_some_and(|(collection, name)| {
                self.can(
                    caller,
                    Permission::Read,
                    &Resource::Artifact { collection, name },
                )
            }),
            Err(_) => false,
        }
    }
}

fn str_of<'a>(e: &'a OutboxEvent, member: &str) -> Option<&'a str> {
    e.draft.payload.get(member)?.as_str()
}

impl EventVisibility for Knowledge {
    fn event_visible(&self, caller: &Caller, e: &OutboxEvent) -> Option<bool> {
        let kind = e.draft.kind.as_str();
        let family = kind.split('.').next().unwrap_or_default();
        Some(match family {
            "artifact" | "hold" => {
                let cleared = str_of(e, "classification")
                    .and_then(|c| c.parse::<Classification>().ok())
                    .is_none_or(|c| self.cleared(caller, c));
                let fallback = str_of(e, "collection").zip(str_of(e, "name"));
                cleared && self.artifact_visible(caller, &e.draft.subject, fallback)
            }
            "relation" => ["source", "target"].iter().all(|end| {
                str_of(e, end).is_some_and(|id| self.artifact_visible(caller, id, None))
            }),
            "collection" => str_of(e, "collection")
                .is_some_and(|c| self.can(caller, Permission::Read, &Resource::Collection(c))),
            // a run in a collection (an ingest) is about that collection
            "ingest" | "run" | "export" => match str_of(e, "collection") {
                Some(c) => self.can(caller, Permission::Read, &Resource::Collection(c)),
                None => return None,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use kontextual_kernel::{AllowAll, Caller, ErrorKind, EventQuery};
    use kontextual_model::{Actor, CorrelationId, Namespace, Timestamp, TypePattern};
    use kontextual_store::sqlite::SqliteBackend;
    use kontextual_store::{FeedOp, Op, Store, WriteBatch, WriteContext};

    use crate::Knowledge;

    fn feed_op(store: &Store, op: FeedOp) {
        store
            .write(WriteBatch {
                ctx: WriteContext {
                    namespace: Namespace::default(),
                    actor: Actor::local_admin(),
                    correlation_id: CorrelationId::new(),
                    run_id: None,
                },
                ops: vec![Op::Feed(op)],
            })
            .unwrap();
    }

    /// O5: a cursor older than what retention deleted is refused with a
    /// message that says so (not silently moved forward); 0 reads from the
    /// oldest event kept; a denial is a `policy.denied` event; a cursor past
    /// the newest event is refused too.
    #[test]
    fn o5_a_cursor_older_than_retention_is_refused() {
        let store = Store::new(SqliteBackend::memory().unwrap());
        let k = Knowledge::with_store(store.clone(), Box::new(AllowAll));
        let caller = Caller::new(Actor::local_admin(), Namespace::default());
        for name in ["a", "b", "c", "d"] {
            k.collection_create(&caller, name, "").unwrap();
        }
        let q = |after| EventQuery {
            after,
            ..Default::default()
        };
        assert_eq!(k.event_page(&caller, &q(0)).unwrap().events.len(), 4);
        // a consumer applied the first two; retention deletes them
        feed_op(
            &store,
            FeedOp::AckOutbox {
                consumer: "test".into(),
                seq: 2,
            },
        );
        feed_op(
            &store,
            FeedOp::PruneOutbox {
                older_than: Timestamp::from_second(4_000_000_000).unwrap(),
            },
        );
        let e = k.event_page(&caller, &q(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let text = e.to_string();
        assert!(
            text.contains("deleted by retention") && text.contains("after=2"),
            "{text}"
        );
        let from_oldest = k.event_page(&caller, &q(0)).unwrap();
        assert_eq!(from_oldest.events.len(), 2);
        assert_eq!(from_oldest.events[0].seq, 3);
        assert_eq!(k.event_page(&caller, &q(2)).unwrap().events.len(), 2);
        let only = EventQuery {
            types: TypePattern::parse_list("collection.*").unwrap(),
            collection: Some("d".into()),
            ..Default::default()
        };
        let page = k.event_page(&caller, &only).unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.next_after, 4);
        // the head itself is a cursor with nothing after it yet; past it,
        // the cursor is not this store's
        assert!(k.event_page(&caller, &q(4)).unwrap().events.is_empty());
        let e = k.event_page(&caller, &q(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(
            e.to_string().contains("the newest event is seq 4")
                && e.to_string().contains("after=4"),
            "{e}"
        );
    }
}
