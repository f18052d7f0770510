//! Contract suites (O5) for the kernel's extension traits: policy modules
//! ([`Policy`]), job handlers ([`JobHandler`]), feed consumers
//! ([`FeedPass`], [`FeedConsumer`]) and a domain's event visibility
//! ([`EventVisibility`]). A new implementation runs its suite in its tests;
//! the existing ones run theirs (`tests/o5_contract.rs` here, and in the
//! domains). See `docs/extension-points.md`.
//!
//! Enabled by the `contract` feature. The checks panic (they are test
//! code) with a message naming the broken rule and the case that broke it.

use std::sync::Arc;

use kontextual_model::{
    Actor, ArtifactName, CollectionName, CorrelationId, Grant, GrantPermission, GrantScope, Job,
    Namespace, OutboxEvent, Scope,
};
use kontextual_store::{Content, KnowledgeOp, Op, PutArtifact, Store, WriteBatch, WriteContext};

use crate::worker::JobControl;
use crate::{
    Caller, ErrorKind, EventVisibility, FeedConsumer, FeedFinish, FeedPass, JobContext, JobHandler,
    JobHost, Kernel, Permission, Policy, Resource, catch_up,
};

// ---------------------------------------------------------------- policy

/// A caller with an API key (`scopes`) whose actor holds `grants`, in the
/// default namespace. `grants: None` is a key whose grants were not loaded.
pub fn keyed_caller(
    actor: &str,
    scopes: &[Scope],
    grants: Option<Vec<(GrantPermission, GrantScope)>>,
) -> Caller {
    let actor: Actor = actor
        .parse()
        .unwrap_or_else(|e| panic!("actor {actor:?}: {e}"));
    let mut c = Caller::new(actor.clone(), Namespace::default());
    c.scopes = Some(scopes.to_vec());
    c.key_id = Some("contract".to_owned());
    c.grants = grants.map(|gs| {
        Arc::new(
            gs.into_iter()
                .map(|(permission, scope)| Grant {
                    id: uuid::Uuid::nil(),
                    namespace: Namespace::default(),
                    actor: actor.clone(),
                    permission,
                    scope,
                    created_at: kontextual_model::now(),
                })
                .collect(),
        )
    });
    c
}

/// The local administrator: no key, no grants needed.
pub fn local_admin() -> Caller {
    Caller::new(Actor::local_admin(), Namespace::default())
}

fn coll(c: &str) -> CollectionName {
    CollectionName::new(c).unwrap_or_else(|e| panic!("collection {c}: {e}"))
}

fn art(n: &str) -> ArtifactName {
    ArtifactName::new(n).unwrap_or_else(|e| panic!("artifact name {n}: {e}"))
}

const PERMISSIONS: [Permission; 3] = [Permission::Read, Permission::Write, Permission::Admin];
const SCOPES: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Admin, Scope::Export];
/// The artifacts of the checks' small world: collection `a` holds `x` and
/// `y`, collection `b` holds `x`.
const ARTIFACTS: [(&str, &str); 3] = [("a", "x"), ("a", "y"), ("b", "x")];

fn resources() -> Vec<Resource<'static>> {
    let mut r = vec![
        Resource::Namespace("the namespace (contract)"),
        Resource::Collection("a"),
        Resource::Collection("b"),
    ];
    r.extend(
        ARTIFACTS
            .iter()
            .map(|&(collection, name)| Resource::Artifact { collection, name }),
    );
    r
}

/// Every grant of the small world: each permission on the namespace, each
/// collection and one artifact.
fn grant_universe() -> Vec<(GrantPermission, GrantScope)> {
    let scopes = [
        GrantScope::Namespace,
        GrantScope::Collection(coll("a")),
        GrantScope::Collection(coll("b")),
        GrantScope::Artifact(coll("a"), art("x")),
    ];
    let mut out = Vec::new();
    for s in &scopes {
        for p in [
            GrantPermission::Read,
            GrantPermission::Write,
            GrantPermission::Admin,
        ] {
            out.push((p, s.clone()));
        }
    }
    out.push((GrantPermission::Export, GrantScope::Namespace));
    out
}

/// Every set of scopes.
fn scope_sets() -> Vec<Vec<Scope>> {
    (0..1u32 << SCOPES.len())
        .map(|bits| {
            SCOPES
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, s)| *s)
                .collect()
        })
        .collect()
}

/// Grant sets of up to three grants of the universe (by index).
fn grant_sets(n: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for i in 0..n {
        out.push(vec![i]);
        for j in i + 1..n {
            out.push(vec![i, j]);
            for k in j + 1..n {
                out.push(vec![i, j, k]);
            }
        }
    }
    out
}

fn caller_with(
    scopes: &[Scope],
    universe: &[(GrantPermission, GrantScope)],
    set: &[usize],
) -> Caller {
    keyed_caller(
        "agent:contract",
        scopes,
        Some(set.iter().map(|&i| universe[i].clone()).collect()),
    )
}

/// What `caller` may do in the small world, as (permission, resource) bits.
fn allowed(p: &dyn Policy, caller: &Caller) -> Vec<bool> {
    let rs = resources();
    PERMISSIONS
        .iter()
        .flat_map(|&perm| rs.iter().map(move |r| (perm, *r)))
        .map(|(perm, r)| p.allows(caller, perm, &r))
        .collect()
}

fn describe(caller: &Caller) -> String {
    let grants: Vec<String> = caller
        .grants
        .iter()
        .flat_map(|g| g.iter())
        .map(|g| format!("{} on {}", g.permission, g.scope))
        .collect();
    format!(
        "caller with scopes {:?} and grants [{}]",
        caller.scopes,
        grants.join(", ")
    )
}

/// The laws of one caller: determinism, permission order, containment.
fn caller_laws(p: &dyn Policy, caller: &Caller) {
    let who = describe(caller);
    for r in resources() {
        let can = |perm| p.allows(caller, perm, &r);
        for perm in PERMISSIONS {
            assert_eq!(
                can(perm),
                can(perm),
                "{who}: {perm:?} {r} is not deterministic"
            );
        }
        assert!(
            !can(Permission::Admin) || can(Permission::Write),
            "{who}: may administer {r} but not write it (admin includes write)"
        );
        assert!(
            !can(Permission::Write) || can(Permission::Read),
            "{who}: may write {r} but not read it (write includes read)"
        );
        // what covers a namespace or a collection covers what is in it:
        // listings rely on it (one grant check, then every artifact)
        for perm in PERMISSIONS {
            if !can(perm) {
                continue;
            }
            let inner: Vec<Resource<'_>> = match r {
                Resource::Namespace(_) => resources()
                    .into_iter()
                    .filter(|i| !matches!(i, Resource::Namespace(_)))
                    .collect(),
                Resource::Collection(c) => ARTIFACTS
                    .iter()
                    .filter(|(ac, _)| *ac == c)
                    .map(|&(collection, name)| Resource::Artifact { collection, name })
                    .collect(),
                Resource::Artifact { .. } => Vec::new(),
            };
            for i in inner {
                assert!(
                    p.allows(caller, perm, &i),
                    "{who}: may {perm:?} {r} but not {i} inside it"
                );
            }
        }
    }
}

/// The laws every [`Policy`] keeps, checked over a small world of two
/// collections and three artifacts, every set of key scopes and every set
/// of up to three grants:
///
/// - the local administrator (a caller without a key) may do everything —
///   the kernel's read rule does not even ask the policy for it;
/// - answers are deterministic;
/// - `admin` includes `write`, which includes `read`;
/// - what a caller may do to the namespace it may do to every collection,
///   and what to a collection, to every artifact in it (a listing checks
///   the collection once, then returns its artifacts);
/// - monotone: another grant or another scope never takes a permission
///   away.
pub fn check_policy(p: &dyn Policy) {
    let admin = local_admin();
    for r in resources() {
        for perm in PERMISSIONS {
            assert!(
                p.allows(&admin, perm, &r),
                "the local administrator may not {perm:?} {r}"
            );
        }
    }
    let universe = grant_universe();
    let sets = grant_sets(universe.len());
    let scope_sets = scope_sets();
    for scopes in &scope_sets {
        for set in &sets {
            let caller = caller_with(scopes, &universe, set);
            caller_laws(p, &caller);
            let before = allowed(p, &caller);
            // one more grant
            for extra in (0..universe.len()).filter(|i| !set.contains(i)) {
                let mut more = set.clone();
                more.push(extra);
                let after = allowed(p, &caller_with(scopes, &universe, &more));
                assert!(
                    before.iter().zip(&after).all(|(b, a)| !b || *a),
                    "{}: the grant {} on {} takes a permission away",
                    describe(&caller),
                    universe[extra].0,
                    universe[extra].1
                );
            }
            // one more scope
            for s in SCOPES.iter().filter(|s| !scopes.contains(s)) {
                let mut more = scopes.clone();
                more.push(*s);
                let after = allowed(p, &caller_with(&more, &universe, set));
                assert!(
                    before.iter().zip(&after).all(|(b, a)| !b || *a),
                    "{}: the scope {s} takes a permission away",
                    describe(&caller)
                );
            }
        }
    }
}

/// The laws of a policy that enforces access control for callers with a
/// key (what `serve` runs), on top of [`check_policy`]:
///
/// - deny by default: a caller with a key and no grant (none loaded, or
///   none held) may do nothing, whatever its scopes;
/// - scopes bound grants: with a grant on the whole namespace, a `read`
///   key may not write and a `write` key may not administer; an `export`
///   key alone may do none of the three;
/// - grants bound scopes: with every scope, a grant on collection `a` does
///   not reach collection `b` or the namespace.
pub fn check_enforcing_policy(p: &dyn Policy) {
    check_policy(p);
    for scopes in scope_sets() {
        for grants in [None, Some(Vec::new())] {
            let stranger = keyed_caller("agent:stranger", &scopes, grants);
            assert!(
                allowed(p, &stranger).iter().all(|a| !a),
                "{}: a caller with no grant may do something",
                describe(&stranger)
            );
        }
    }
    let all = [GrantPermission::Admin, GrantPermission::Write];
    for (scopes, may_not) in [
        (
            vec![Scope::Read],
            vec![Permission::Write, Permission::Admin],
        ),
        (vec![Scope::Write], vec![Permission::Admin]),
        (vec![Scope::Export], PERMISSIONS.to_vec()),
    ] {
        let c = keyed_caller(
            "agent:bounded",
            &scopes,
            Some(all.iter().map(|p| (*p, GrantScope::Namespace)).collect()),
        );
        for perm in may_not {
            for r in resources() {
                assert!(
                    !p.allows(&c, perm, &r),
                    "{}: may {perm:?} {r} beyond its key's scopes",
                    describe(&c)
                );
            }
        }
    }
    let c = keyed_caller(
        "agent:bounded",
        &SCOPES,
        Some(vec![(
            GrantPermission::Admin,
            GrantScope::Collection(coll("a")),
        )]),
    );
    for perm in PERMISSIONS {
        for r in [
            Resource::Namespace("the namespace (contract)"),
            Resource::Collection("b"),
            Resource::Artifact {
                collection: "b",
                name: "x",
            },
        ] {
            assert!(
                !p.allows(&c, perm, &r),
                "{}: may {perm:?} {r}, which no grant covers",
                describe(&c)
            );
        }
    }
}

fn admin_ctx() -> WriteContext {
    WriteContext {
        namespace: Namespace::default(),
        actor: Actor::local_admin(),
        correlation_id: CorrelationId::new(),
        run_id: None,
    }
}

/// A store in memory holding the small world (collections `a` and `b`,
/// artifacts `a/x`, `a/y`, `b/x`).
pub fn small_world() -> Store {
    let store = Store::new(
        kontextual_store::sqlite::SqliteBackend::memory()
            .unwrap_or_else(|e| panic!("a store in memory: {e}")),
    );
    let mut ops: Vec<Op> = ["a", "b"]
        .iter()
        .map(|c| {
            Op::Knowledge(KnowledgeOp::CreateCollection {
                name: coll(c),
                description: String::new(),
                if_absent: true,
            })
        })
        .collect();
    ops.extend(ARTIFACTS.iter().map(|(c, n)| {
        Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
            coll(c),
            art(n),
            Content::Bytes(format!("{c}/{n}").into_bytes()),
        )))
    }));
    store
        .write(WriteBatch {
            ctx: admin_ctx(),
            ops,
        })
        .unwrap_or_else(|e| panic!("writing the small world: {e}"));
    store
}

/// The callers the kernel checks use: a stranger, readers and writers of
/// parts, an administrator of the namespace with narrower keys, the local
/// administrator.
fn sample_callers() -> Vec<Caller> {
    use GrantPermission as G;
    vec![
        local_admin(),
        keyed_caller("agent:stranger", &[Scope::Read], Some(vec![])),
        keyed_caller(
            "agent:reader",
            &[Scope::Read],
            Some(vec![(G::Read, GrantScope::Collection(coll("a")))]),
        ),
        keyed_caller(
            "agent:writer",
            &[Scope::Write],
            Some(vec![(G::Write, GrantScope::Artifact(coll("a"), art("x")))]),
        ),
        keyed_caller(
            "agent:mixed",
            &[Scope::Write, Scope::Admin],
            Some(vec![
                (G::Read, GrantScope::Collection(coll("b"))),
                (G::Admin, GrantScope::Artifact(coll("a"), art("y"))),
            ]),
        ),
        keyed_caller(
            "agent:narrow-key",
            &[Scope::Read],
            Some(vec![(G::Admin, GrantScope::Namespace)]),
        ),
        keyed_caller(
            "agent:admin",
            &[Scope::Admin],
            Some(vec![(G::Admin, GrantScope::Namespace)]),
        ),
    ]
}

/// The policy as the kernel applies it agrees with itself (one read
/// rule): a kernel over [`small_world`] with the policy `make` builds,
/// for a set of sample callers and every permission and resource:
///
/// - `authorize` succeeds exactly when the policy allows;
/// - a refusal about a collection or artifact the caller may not even
///   read is "not found" (indistinguishable from something missing), any
///   other refusal "denied"; a refusal about the namespace is "denied";
/// - every refusal is audited (`policy.deny.<permission>`, outcome denied);
/// - `readable` of each artifact (no classification above the caller's
///   clearance, no quarantine) is the policy's read permission on it, and
///   a listing of a readable collection filters nothing more
///   (`listing_visibility` adds only clearance and quarantine).
pub fn check_policy_in_kernel(make: &dyn Fn() -> Box<dyn Policy>) {
    let store = small_world();
    let kernel = Kernel::new(store.clone(), make());
    let policy = make();
    let ns = Namespace::default();
    for caller in sample_callers() {
        let who = describe(&caller);
        for r in resources() {
            for perm in PERMISSIONS {
                let allows = policy.allows(&caller, perm, &r);
                let before = store
                    .audit()
                    .head()
                    .unwrap_or_else(|e| panic!("audit head: {e}"));
                match kernel.authorize(&caller, perm, &r) {
                    Ok(()) => assert!(allows, "{who}: authorize lets {perm:?} {r} through"),
                    Err(e) => {
                        assert!(!allows, "{who}: authorize refuses {perm:?} {r}: {e}");
                        let hidden = !matches!(r, Resource::Namespace(_))
                            && !policy.allows(&caller, Permission::Read, &r);
                        let want = if hidden {
                            ErrorKind::NotFound
                        } else {
                            ErrorKind::Denied
                        };
                        assert_eq!(e.kind(), want, "{who}: {perm:?} {r}: {e}");
                        if hidden {
                            assert_eq!(
                                e.to_string(),
                                format!("{r} not found"),
                                "{who}: a hidden {r} must read like a missing one"
                            );
                        }
                        let last = store
                            .audit()
                            .records(before.map_or(0, |h| h.seq), 10)
                            .unwrap_or_else(|e| panic!("audit records: {e}"));
                        assert!(
                            last.iter().any(|rec| rec.draft.action
                                == format!("policy.deny.{}", perm.as_str())
                                && rec.draft.outcome == kontextual_model::Outcome::Denied
                                && rec.actor == caller.actor),
                            "{who}: the refusal of {perm:?} {r} is not audited"
                        );
                    }
                }
            }
        }
        for (c, n) in ARTIFACTS {
            let a = store
                .knowledge()
                .artifact(
                    &ns,
                    &kontextual_store::ArtifactKey::Name {
                        collection: coll(c),
                        name: art(n),
                    },
                )
                .unwrap_or_else(|e| panic!("reading {c}/{n}: {e}"))
                .unwrap_or_else(|| panic!("{c}/{n} is in the small world"));
            let r = Resource::Artifact {
                collection: c,
                name: n,
            };
            assert_eq!(
                kernel.readable(&caller, &a),
                policy.allows(&caller, Permission::Read, &r),
                "{who}: readable({c}/{n}) disagrees with the policy"
            );
            if policy.allows(&caller, Permission::Read, &Resource::Collection(c)) {
                assert!(
                    kernel.readable(&caller, &a),
                    "{who}: may list collection {c} but not read {c}/{n} in it"
                );
                let (max_class, _) = kernel.listing_visibility(&caller, &Resource::Collection(c));
                assert_eq!(max_class, caller.clearance, "{who}: listing clearance");
            }
        }
    }
}

// ---------------------------------------------------------- job handlers

/// Payloads that fit no kind: not an object, or an object with a member
/// no kind has.
pub fn malformed_payloads() -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!(42),
        json!("text"),
        json!(true),
        json!([]),
        json!([1, "two", true]),
        json!({ "contract-unknown-member": true }),
    ]
}

fn is_kind_name(k: &str) -> bool {
    let mut bytes = k.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

/// The [`JobHandler`] contract, on `host` (which need not have the
/// handler registered):
///
/// - `kind` is a stable name (`[a-z0-9][a-z0-9._-]*`), `max_attempts`
///   at least 1;
/// - `check` accepts each of `valid` for `caller` (who may do the work);
/// - `check` refuses every payload of [`malformed_payloads`] and of
///   `malformed` with `invalid_input`, even for `caller`;
/// - `check` refuses `valid` payloads for a caller with a key and no
///   grant (`denied` or `not_found`), unless the host's policy lets such a
///   caller read the namespace (`AllowAll`);
/// - `unique_key` is deterministic and never an empty string;
///   `unavailable_here` and `retry_delay` answer without panicking.
pub fn check_job_handler<H: JobHost>(
    host: &H,
    handler: &dyn JobHandler<H>,
    caller: &Caller,
    valid: &[serde_json::Value],
    malformed: &[serde_json::Value],
) {
    let kind = handler.kind().to_owned();
    assert!(is_kind_name(&kind), "job kind {kind:?} is not a name");
    assert_eq!(handler.kind(), kind, "job kind is not stable");
    assert!(handler.max_attempts() >= 1, "{kind}: max_attempts is 0");
    assert_eq!(
        handler.max_attempts(),
        handler.max_attempts(),
        "{kind}: max_attempts is not stable"
    );
    let _ = handler.unavailable_here(host);
    for attempt in 1..=handler.max_attempts() {
        let _ = handler.retry_delay(attempt);
    }
    let stranger = keyed_caller("agent:stranger", &SCOPES, Some(Vec::new()));
    let policy_denies_strangers =
        !host
            .kernel()
            .can(&stranger, Permission::Read, &Resource::Namespace("jobs"));
    let key = |p: &serde_json::Value| {
        let k = handler.unique_key(p);
        assert_eq!(
            k,
            handler.unique_key(p),
            "{kind}: unique_key({p}) is not deterministic"
        );
        assert!(
            k.as_deref() != Some(""),
            "{kind}: unique_key({p}) is an empty key (None means no key)"
        );
    };
    for p in valid {
        if let Err(e) = handler.check(host, caller, p) {
            panic!("{kind}: check refuses the valid payload {p}: {e}");
        }
        key(p);
        if policy_denies_strangers {
            match handler.check(host, &stranger, p) {
                Ok(()) => panic!("{kind}: a caller with no grant may enqueue {p}"),
                Err(e) => assert!(
                    matches!(e.kind(), ErrorKind::Denied | ErrorKind::NotFound),
                    "{kind}: refusing {p} to a caller with no grant: {e} ({:?})",
                    e.kind()
                ),
            }
        }
    }
    for p in malformed_payloads().iter().chain(malformed) {
        match handler.check(host, caller, p) {
            Ok(()) => panic!("{kind}: check accepts the malformed payload {p}"),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::InvalidInput,
                "{kind}: the malformed payload {p} is refused with {e}"
            ),
        }
        key(p);
    }
}

/// Enqueues `payload` as `caller` and claims the job, as a worker would
/// before handing it to the handler.
fn claimed_job<H: JobHost>(
    host: &H,
    kind: &str,
    caller: &Caller,
    payload: &serde_json::Value,
) -> Job {
    let enqueued = crate::JobQueue::job_enqueue(
        host,
        caller,
        kind,
        payload.clone(),
        crate::EnqueueOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{kind}: enqueueing {payload}: {e}"));
    let changes = host
        .kernel()
        .store()
        .write(WriteBatch {
            ctx: admin_ctx(),
            ops: vec![Op::Jobs(kontextual_store::JobOp::ClaimJobs {
                worker: "contract".to_owned(),
                kinds: vec![kind.to_owned()],
                limit: 1,
                lease: std::time::Duration::from_secs(600),
            })],
        })
        .unwrap_or_else(|e| panic!("{kind}: claiming the job: {e}"));
    changes
        .into_iter()
        .find_map(|c| match c {
            kontextual_model::Change::JobsClaimed { jobs } => {
                jobs.into_iter().find(|j| j.id == enqueued.job.id)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{kind}: the enqueued job was not claimed"))
}

/// Jobs run at least once, so a handler's work is idempotent. The
/// handler must be registered in `host`'s registry: `payload` is
/// enqueued by `caller` and claimed, then its attempt runs to success
/// twice in a row (as a redelivered attempt would); and, asked to stop
/// before it starts, it ends at once — successfully, with a failure not
/// worth retrying, or with the `stopped` conflict.
pub fn check_job_runs<H: JobHost>(
    host: &H,
    handler: &dyn JobHandler<H>,
    caller: &Caller,
    payload: &serde_json::Value,
) {
    let kind = handler.kind().to_owned();
    let job = claimed_job(host, &kind, caller, payload);
    let mut runner = caller.clone();
    runner.correlation_id = job.correlation_id.clone();
    for attempt in ["first", "second"] {
        let control = JobControl::new(false);
        let ctx = JobContext::new(runner.clone(), &job, &control);
        if let Err(f) = handler.run(host, &ctx) {
            panic!("{kind}: the {attempt} run of {payload} failed: {}", f.error);
        }
        // what the worker writes with the outcome
        let ops: Vec<_> = ctx.take_deferred().iter().flat_map(|make| make()).collect();
        if !ops.is_empty() {
            host.kernel()
                .store()
                .write(kontextual_store::WriteBatch {
                    ctx: runner.write_ctx(),
                    ops,
                })
                .unwrap_or_else(|e| panic!("{kind}: writing the {attempt} run's records: {e}"));
        }
    }
    let control = JobControl::new(true);
    let ctx = JobContext::new(runner, &job, &control);
    assert!(ctx.should_stop());
    if let Err(f) = handler.run(host, &ctx) {
        assert!(
            !f.error.retryable() || f.error.kind() == ErrorKind::Conflict,
            "{kind}: a job asked to stop fails with a retryable {}",
            f.error
        );
    }
}

// ---------------------------------------------------------- feed consumers

/// What the feed-consumer suite needs of a consumer under test: its
/// store, a way to make changes it reacts to, a pass over the feed, and
/// a view of what it has made durable.
pub trait FeedFixture {
    /// The store whose feed the consumer follows.
    fn store(&self) -> &Store;
    /// The name the consumer's commits are acknowledged under.
    fn consumer(&self) -> &str;
    /// Writes changes the consumer reacts to; `round` counts from 0, so
    /// each call can write something new (and change or delete what an
    /// earlier round wrote).
    fn produce(&self, round: u32);
    /// Opens a pass at the consumer's cursor. The suite drops each pass
    /// before it opens the next.
    fn open(&self) -> Box<dyn FeedPass + '_>;
    /// What the consumer has committed, in a form that compares: equal
    /// strings for equal results.
    fn observe(&self) -> String;
}

fn feed_events(store: &Store, after: u64) -> Vec<OutboxEvent> {
    store
        .feed()
        .events(after, 100_000)
        .unwrap_or_else(|e| panic!("reading the feed: {e}"))
}

fn acked(store: &Store, consumer: &str) -> u64 {
    store
        .feed()
        .cursors()
        .unwrap_or_else(|e| panic!("reading the feed cursors: {e}"))
        .into_iter()
        .find(|(name, _)| name == consumer)
        .map_or(0, |(_, seq)| seq)
}

fn last_seq(store: &Store) -> u64 {
    store
        .feed()
        .position()
        .unwrap_or_else(|e| panic!("reading the feed position: {e}"))
        .last_seq
}

/// The [`FeedPass`] contract (a consumer of the change feed):
///
/// - an empty batch changes nothing and asks for no commit;
/// - after a batch the cursor is the batch's last seq, and the pass has
///   uncommitted work; `commit` returns the cursor and leaves none;
/// - the cursor only moves forward: replaying events at or below it
///   leaves it where it is;
/// - replay is idempotent and batching does not matter: the whole feed
///   applied again — in one batch, then one event at a time — commits
///   what applying it once did;
/// - a new pass starts at least where the last commit ended;
/// - [`catch_up`] with [`FeedFinish::Commit`] applies the feed to its end,
///   commits and acknowledges exactly the committed seq under the
///   consumer's name; with [`FeedFinish::WhenAsked`] it never acknowledges
///   beyond what was committed.
pub fn check_feed_pass(f: &dyn FeedFixture) {
    let store = f.store();
    let name = f.consumer().to_owned();
    assert!(!name.is_empty(), "a consumer needs a name");

    f.produce(0);
    let committed = {
        let mut pass = f.open();
        let start = pass.cursor();
        let uncommitted = pass.uncommitted();
        assert!(
            !pass
                .apply(&[])
                .unwrap_or_else(|e| panic!("{name}: apply(&[]): {e}")),
            "{name}: an empty batch asks for a commit"
        );
        assert_eq!(
            pass.cursor(),
            start,
            "{name}: an empty batch moved the cursor"
        );
        assert_eq!(
            pass.uncommitted(),
            uncommitted,
            "{name}: an empty batch left work"
        );
        let events = feed_events(store, start);
        let last = events.last().map(|e| e.seq);
        assert!(last.is_some(), "{name}: produce(0) wrote no event");
        let _ = pass
            .apply(&events)
            .unwrap_or_else(|e| panic!("{name}: apply: {e}"));
        assert_eq!(Some(pass.cursor()), last, "{name}: cursor after a batch");
        assert!(pass.uncommitted(), "{name}: a batch left nothing to commit");
        let seq = pass
            .commit()
            .unwrap_or_else(|e| panic!("{name}: commit: {e}"));
        assert_eq!(seq, pass.cursor(), "{name}: commit covers another seq");
        assert!(!pass.uncommitted(), "{name}: work left after a commit");
        seq
    };
    let once = f.observe();

    // replay everything, twice, differently batched
    {
        let mut pass = f.open();
        assert!(
            pass.cursor() >= committed,
            "{name}: a new pass starts before the last commit"
        );
        let all = feed_events(store, 0);
        let _ = pass
            .apply(&all)
            .unwrap_or_else(|e| panic!("{name}: replay: {e}"));
        assert!(
            pass.cursor() >= committed,
            "{name}: replay moved the cursor back"
        );
        for e in &all {
            let _ = pass
                .apply(std::slice::from_ref(e))
                .unwrap_or_else(|e| panic!("{name}: replay one by one: {e}"));
            assert!(
                pass.cursor() >= committed,
                "{name}: replay moved the cursor back"
            );
        }
        if pass.uncommitted() {
            let _ = pass
                .commit()
                .unwrap_or_else(|e| panic!("{name}: commit: {e}"));
        }
    }
    assert_eq!(
        f.observe(),
        once,
        "{name}: replaying the feed changed the result"
    );

    // catch_up to the end, committing and acknowledging
    f.produce(1);
    f.produce(2);
    {
        let mut pass = f.open();
        catch_up(store, &name, 2, &mut *pass, FeedFinish::Commit)
            .unwrap_or_else(|e| panic!("{name}: catch_up: {e}"));
        let end = last_seq(store);
        assert_eq!(
            pass.cursor(),
            end,
            "{name}: catch_up stopped before the end"
        );
        assert!(!pass.uncommitted(), "{name}: catch_up(Commit) left work");
        assert_eq!(
            acked(store, &name),
            end,
            "{name}: catch_up acknowledged another seq"
        );
    }
    let caught_up = f.observe();
    {
        let mut pass = f.open();
        let all = feed_events(store, 0);
        let _ = pass
            .apply(&all)
            .unwrap_or_else(|e| panic!("{name}: replay: {e}"));
        if pass.uncommitted() {
            let _ = pass
                .commit()
                .unwrap_or_else(|e| panic!("{name}: commit: {e}"));
        }
    }
    assert_eq!(
        f.observe(),
        caught_up,
        "{name}: applying the feed again after catch_up changed the result"
    );

    // follow without committing: nothing is acknowledged beyond a commit
    f.produce(3);
    {
        let before = acked(store, &name);
        let mut pass = f.open();
        catch_up(store, &name, 1000, &mut *pass, FeedFinish::WhenAsked)
            .unwrap_or_else(|e| panic!("{name}: catch_up: {e}"));
        assert_eq!(
            pass.cursor(),
            last_seq(store),
            "{name}: catch_up stopped early"
        );
        if pass.uncommitted() {
            assert_eq!(
                acked(store, &name),
                before,
                "{name}: acknowledged what it has not committed"
            );
            let seq = pass
                .commit()
                .unwrap_or_else(|e| panic!("{name}: commit: {e}"));
            assert_eq!(seq, last_seq(store));
        }
    }
}

/// The [`FeedConsumer`] contract: a stable, non-empty name; `follow`
/// brings the consumer to the end of the feed and acknowledges it (so
/// retention can prune), and a second `follow` with nothing new is a
/// no-op that succeeds. `produce` writes changes the consumer reacts to.
pub fn check_feed_consumer<H>(
    host: &H,
    store: &Store,
    consumer: &dyn FeedConsumer<H>,
    produce: &dyn Fn(u32),
) {
    let name = consumer.name().to_owned();
    assert!(!name.is_empty(), "a consumer needs a name");
    assert_eq!(consumer.name(), name, "a consumer's name is stable");
    for round in 0..2 {
        produce(round);
        consumer
            .follow(host)
            .unwrap_or_else(|e| panic!("{name}: follow: {e}"));
        assert_eq!(
            acked(store, &name),
            last_seq(store),
            "{name}: follow did not acknowledge the end of the feed"
        );
        consumer
            .follow(host)
            .unwrap_or_else(|e| panic!("{name}: a second follow: {e}"));
        assert_eq!(
            acked(store, &name),
            last_seq(store),
            "{name}: second follow"
        );
    }
}

// ------------------------------------------------------- event visibility

/// The [`EventVisibility`] contract, over `events` (the feed of a store
/// the domain wrote to):
///
/// - answers are deterministic;
/// - deny by default: a caller with a key and no grant is shown nothing
///   (never `Some(true)`);
/// - a domain claims only its own events: the kernel's (`job.*`, `key.*`,
///   `grant.*`, `clearance.*`) and unknown types are `None`.
///
/// The local administrator is never asked (the kernel shows it every
/// event), so nothing is checked for it.
pub fn check_event_visibility(v: &dyn EventVisibility, events: &[OutboxEvent]) {
    let strangers = [
        keyed_caller("agent:stranger", &SCOPES, Some(Vec::new())),
        keyed_caller("agent:stranger", &[Scope::Read], None),
    ];
    for e in events {
        for s in &strangers {
            let seen = v.event_visible(s, e);
            assert_eq!(
                seen,
                v.event_visible(s, e),
                "{}: not deterministic",
                e.draft.kind
            );
            assert_ne!(
                seen,
                Some(true),
                "{} #{}: shown to a caller with no grant",
                e.draft.kind,
                e.seq
            );
        }
        let mut foreign = e.clone();
        for kind in [
            "job.succeeded",
            "key.created",
            "grant.created",
            "clearance.set",
            "contract.unknown",
        ] {
            foreign.draft.kind = kind.to_owned();
            assert_eq!(
                v.event_visible(&strangers[0], &foreign),
                None,
                "claims the event type {kind}, which is not the domain's"
            );
        }
    }
}
