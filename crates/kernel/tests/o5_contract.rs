//! O5 (issue 19): the kernel's policy modules, its `noop` job handler and
//! small examples of each extension trait — written here, outside the
//! crate, as a new implementation would be — pass their contract suites
//! (`kontextual_kernel::contract`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use kontextual_kernel::contract::{
    FeedFixture, check_enforcing_policy, check_event_visibility, check_feed_consumer,
    check_feed_pass, check_job_handler, check_job_runs, check_policy, check_policy_in_kernel,
    local_admin, small_world,
};
use kontextual_kernel::{
    AccessPolicy, AllowAll, Caller, Error, EventVisibility, FeedConsumer, FeedFinish, FeedPass,
    JobContext, JobFailure, JobHandler, JobHost, JobRegistry, Kernel, NoopJob, Permission, Policy,
    Resource, Result, catch_up, parse_payload,
};
use kontextual_model::{
    Actor, ArtifactName, CollectionName, CorrelationId, Namespace, OutboxEvent,
};
use kontextual_store::{Content, KnowledgeOp, Op, PutArtifact, Store, WriteBatch, WriteContext};
use serde_json::json;

// ---- policy modules ----

#[test]
fn o5_contract_allow_all_policy() {
    check_policy(&AllowAll);
    check_policy_in_kernel(&|| Box::new(AllowAll));
}

#[test]
fn o5_contract_access_policy() {
    check_enforcing_policy(&AccessPolicy);
    check_policy_in_kernel(&|| Box::new(AccessPolicy));
}

/// An example policy module: keys may only read (a read-only replica),
/// whatever their grants; the local administrator keeps everything.
struct ReadOnlyKeys;

impl Policy for ReadOnlyKeys {
    fn allows(&self, caller: &Caller, permission: Permission, resource: &Resource<'_>) -> bool {
        (caller.scopes.is_none() || permission == Permission::Read)
            && AccessPolicy.allows(caller, permission, resource)
    }
}

#[test]
fn o5_contract_example_policy() {
    check_enforcing_policy(&ReadOnlyKeys);
    check_policy_in_kernel(&|| Box::new(ReadOnlyKeys));
}

/// The suite catches a policy that lets a caller with no grant read.
struct Leaky;

impl Policy for Leaky {
    fn allows(&self, caller: &Caller, permission: Permission, resource: &Resource<'_>) -> bool {
        permission == Permission::Read || AccessPolicy.allows(caller, permission, resource)
    }
}

#[test]
#[should_panic(expected = "a caller with no grant may do something")]
fn o5_contract_catches_a_leaky_policy() {
    check_enforcing_policy(&Leaky);
}

// ---- a host for job handlers and feed consumers ----

struct Host {
    kernel: Kernel,
    jobs: JobRegistry<Host>,
    latest: Latest,
}

impl JobHost for Host {
    fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    fn job_handlers(&self) -> &JobRegistry<Host> {
        &self.jobs
    }
}

fn host(store: Store) -> Host {
    let mut jobs = JobRegistry::default();
    jobs.register(std::sync::Arc::new(NoopJob)).unwrap();
    jobs.register(std::sync::Arc::new(Echo)).unwrap();
    Host {
        kernel: Kernel::new(store, Box::new(AccessPolicy)),
        jobs,
        latest: Latest::default(),
    }
}

// ---- job handlers ----

#[test]
fn o5_contract_noop_job_handler() {
    let h = host(small_world());
    let admin = local_admin();
    check_job_handler(
        &h,
        &NoopJob,
        &admin,
        &[
            json!({}),
            json!({ "sleep_ms": 1 }),
            json!({ "fail": "x", "permanent": true }),
        ],
        &[json!({ "sleep_ms": "long" }), json!(null)],
    );
    check_job_runs(&h, &NoopJob, &admin, &json!({ "sleep_ms": 1 }));
}

/// An example job kind: echoes a text; one waiting job per text.
struct Echo;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoPayload {
    text: String,
}

impl JobHandler<Host> for Echo {
    fn kind(&self) -> &str {
        "example.echo"
    }

    fn max_attempts(&self) -> u32 {
        2
    }

    fn unique_key(&self, payload: &serde_json::Value) -> Option<String> {
        let text = payload.get("text")?.as_str()?;
        Some(format!("echo:{text}"))
    }

    fn check(&self, host: &Host, caller: &Caller, payload: &serde_json::Value) -> Result<()> {
        let _: EchoPayload = parse_payload("example.echo", payload)?;
        host.kernel
            .authorize(caller, Permission::Write, &Resource::Namespace("echoes"))
    }

    fn run(
        &self,
        _host: &Host,
        ctx: &JobContext<'_>,
    ) -> std::result::Result<Option<serde_json::Value>, JobFailure> {
        if ctx.should_stop() {
            return Err(Error::Stopped("asked to stop".to_owned()).into());
        }
        let p: EchoPayload = ctx.payload()?;
        Ok(Some(json!({ "echo": p.text })))
    }
}

#[test]
fn o5_contract_example_job_handler() {
    let h = host(small_world());
    let admin = local_admin();
    check_job_handler(
        &h,
        &Echo,
        &admin,
        &[json!({ "text": "hi" }), json!({ "text": "" })],
        &[json!({}), json!({ "text": 3 })],
    );
    check_job_runs(&h, &Echo, &admin, &json!({ "text": "hi" }));
}

// ---- feed consumers ----

/// An example consumer: the latest event type of every subject, kept "durably"
/// (in memory) with the seq it covers.
/// Subject → (seq, event type) of the latest event about it.
type LatestBySubject = BTreeMap<String, (u64, String)>;

#[derive(Default)]
struct Latest {
    committed: Mutex<(u64, LatestBySubject)>,
}

struct LatestPass<'a> {
    owner: &'a Latest,
    cursor: u64,
    state: LatestBySubject,
    dirty: bool,
}

impl Latest {
    fn open(&self) -> LatestPass<'_> {
        let c = self.committed.lock().unwrap();
        LatestPass {
            owner: self,
            cursor: c.0,
            state: c.1.clone(),
            dirty: false,
        }
    }
}

impl FeedPass for LatestPass<'_> {
    fn cursor(&self) -> u64 {
        self.cursor
    }

    fn apply(&mut self, events: &[OutboxEvent]) -> Result<bool> {
        for e in events {
            let slot = self
                .state
                .entry(e.draft.subject.clone())
                .or_insert((0, String::new()));
            if e.seq >= slot.0 {
                *slot = (e.seq, e.draft.kind.clone());
            }
            self.cursor = self.cursor.max(e.seq);
            self.dirty = true;
        }
        Ok(self.state.len() > 10_000)
    }

    fn uncommitted(&self) -> bool {
        self.dirty
    }

    fn commit(&mut self) -> Result<u64> {
        *self.owner.committed.lock().unwrap() = (self.cursor, self.state.clone());
        self.dirty = false;
        Ok(self.cursor)
    }
}

const LATEST: &str = "example-latest";

struct LatestConsumer;

impl FeedConsumer<Host> for LatestConsumer {
    fn name(&self) -> &str {
        LATEST
    }

    fn follow(&self, host: &Host) -> Result<()> {
        let mut pass = host.latest.open();
        catch_up(
            host.kernel.store(),
            LATEST,
            100,
            &mut pass,
            FeedFinish::Commit,
        )
    }
}

/// Writes artifact changes in collection `a`: a new artifact per round,
/// and a change to `a/x`.
fn produce(store: &Store, round: u32) {
    let put = |name: &str, body: String| {
        Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
            CollectionName::new("a").unwrap(),
            ArtifactName::new(name).unwrap(),
            Content::Bytes(body.into_bytes()),
        )))
    };
    store
        .write(WriteBatch {
            ctx: WriteContext {
                namespace: Namespace::default(),
                actor: Actor::local_admin(),
                correlation_id: CorrelationId::new(),
                run_id: None,
            },
            ops: vec![
                put(&format!("round-{round}"), format!("round {round}")),
                put("x", format!("x as of round {round}")),
            ],
        })
        .unwrap();
}

struct LatestFixture {
    host: Host,
}

impl FeedFixture for LatestFixture {
    fn store(&self) -> &Store {
        self.host.kernel.store()
    }

    fn consumer(&self) -> &str {
        LATEST
    }

    fn produce(&self, round: u32) {
        produce(self.store(), round);
    }

    fn open(&self) -> Box<dyn FeedPass + '_> {
        Box::new(self.host.latest.open())
    }

    fn observe(&self) -> String {
        format!("{:?}", self.host.latest.committed.lock().unwrap())
    }
}

#[test]
fn o5_contract_example_feed_consumer() {
    let fixture = LatestFixture {
        host: host(small_world()),
    };
    check_feed_pass(&fixture);
    let h = host(small_world());
    check_feed_consumer(&h, h.kernel.store(), &LatestConsumer, &|round| {
        produce(h.kernel.store(), round)
    });
}

// ---- event visibility ----

/// An example domain's visibility: it owns collections, visible to who
/// may read them.
struct Collections<'a>(&'a Kernel);

impl EventVisibility for Collections<'_> {
    fn event_visible(&self, caller: &Caller, event: &OutboxEvent) -> Option<bool> {
        if !event.draft.kind.starts_with("collection.") {
            return None;
        }
        let c = event.draft.payload.get("collection")?.as_str()?;
        Some(
            self.0
                .can(caller, Permission::Read, &Resource::Collection(c)),
        )
    }
}

#[test]
fn o5_contract_example_event_visibility() {
    let store = small_world();
    let kernel = Kernel::new(store.clone(), Box::new(AccessPolicy));
    let events = store.feed().events(0, 1000).unwrap();
    assert!(events.iter().any(|e| e.draft.kind == "collection.created"));
    check_event_visibility(&Collections(&kernel), &events);
}
