//! Conformance cases for the job queue and quarantines (O1, O2).

use std::time::Duration;

use kontextual_model::{
    AttemptOutcome, Change, Job, JobId, JobResult, JobState, Namespace, RunId, RunStatus,
};

use super::{Harness, coll, ctx, name};
use crate::{
    AccessOp, ArtifactKey, Content, ErrorKind, FeedOp, JobAction, JobOp, JobQuery, KnowledgeOp,
    NewJob, Op, PageRequest, PutArtifact, RunOp, Store, WriteBatch, WriteContext,
};

fn write(store: &Store, ctx: &WriteContext, ops: Vec<Op>) -> crate::Result<Vec<Change>> {
    store.write(WriteBatch {
        ctx: ctx.clone(),
        ops,
    })
}

fn new_job(kind: &str, max_attempts: u32) -> NewJob {
    NewJob {
        id: JobId::new(),
        kind: kind.to_owned(),
        payload: serde_json::json!({ "n": 1 }),
        max_attempts,
        run_at: None,
        unique_key: None,
        key_id: None,
        scopes: None,
    }
}

fn enqueue(s: &Store, c: &WriteContext, job: NewJob) -> Job {
    match write(s, c, vec![Op::Jobs(JobOp::EnqueueJob(job))])
        .unwrap()
        .pop()
    {
        Some(Change::JobEnqueued { job }) | Some(Change::JobUnchanged { job }) => job,
        other => panic!("unexpected {other:?}"),
    }
}

fn claim(s: &Store, worker: &str, limit: u32, lease: Duration) -> Vec<Job> {
    let c = ctx("default");
    match write(
        s,
        &c,
        vec![Op::Jobs(JobOp::ClaimJobs {
            worker: worker.to_owned(),
            kinds: Vec::new(),
            limit,
            lease,
        })],
    )
    .unwrap()
    .pop()
    {
        Some(Change::JobsClaimed { jobs }) => jobs,
        other => panic!("unexpected {other:?}"),
    }
}

fn finish(s: &Store, job: &Job, result: JobResult) -> crate::Result<Job> {
    let c = ctx("default");
    match write(
        s,
        &c,
        vec![Op::Jobs(JobOp::FinishJob {
            id: job.id,
            attempt: job.attempt,
            result,
            report: None,
        })],
    )?
    .pop()
    {
        Some(Change::JobFinished { id, .. }) => {
            Ok(s.jobs().get(&c.namespace, id)?.expect("finished job"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn act(s: &Store, c: &WriteContext, id: JobId, action: JobAction) -> crate::Result<(Job, bool)> {
    match write(s, c, vec![Op::Jobs(JobOp::ActOnJob { id, action })])?.pop() {
        Some(Change::JobActed(t)) => Ok((t.job, t.changed)),
        other => panic!("unexpected {other:?}"),
    }
}

const LEASE: Duration = Duration::from_secs(60);

/// O1: due jobs are claimed oldest first, once; scheduled jobs wait; the
/// attempt is recorded; completion counts once.
pub fn o1_jobs_are_claimed_once_in_order_and_completed_once(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let a = enqueue(&s, &c, new_job("noop", 3));
    let b = enqueue(&s, &c, new_job("noop", 3));
    let mut later = new_job("noop", 3);
    later.run_at = Some(kontextual_model::now() + jiff::SignedDuration::from_secs(3600));
    let later = enqueue(&s, &c, later);
    assert_eq!(a.state, JobState::Queued);
    let got = claim(&s, "w1", 10, LEASE);
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        [a.id, b.id],
        "due jobs, oldest first; the scheduled one waits"
    );
    assert!(got.iter().all(|j| j.state == JobState::Running
        && j.attempt == 1
        && j.worker.as_deref() == Some("w1")));
    assert!(
        claim(&s, "w2", 10, LEASE).is_empty(),
        "nothing is claimed twice"
    );
    let done = finish(&s, &got[0], JobResult::Succeeded).unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert!(done.finished_at.is_some() && done.lease_expires_at.is_none());
    assert_eq!(
        done.worker.as_deref(),
        Some("w1"),
        "the latest attempt's worker is kept"
    );
    let again = finish(&s, &got[0], JobResult::Succeeded).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict, "{again}");
    let attempts = s.jobs().attempts(&c.namespace, a.id).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Succeeded);
    assert_eq!(attempts[0].worker, "w1");
    let listed = s
        .jobs()
        .list(
            &c.namespace,
            &JobQuery {
                state: Some(JobState::Queued),
                kind: None,
            },
            &PageRequest::first(10),
        )
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        [later.id]
    );
    let other_ns = Namespace::new("other").unwrap();
    assert!(
        s.jobs().get(&other_ns, a.id).unwrap().is_none(),
        "jobs are namespaced"
    );
    let stats = s.jobs().stats().unwrap();
    let count = |st: JobState| {
        stats
            .counts
            .iter()
            .filter(|(k, s2, _)| k == "noop" && *s2 == st)
            .map(|(_, _, n)| *n)
            .sum::<u64>()
    };
    assert_eq!(
        (
            count(JobState::Queued),
            count(JobState::Running),
            count(JobState::Succeeded)
        ),
        (1, 1, 1)
    );
}

/// O2: a job whose lease expired is rescued and claimed again; the old
/// worker can neither heartbeat nor complete it (fencing).
pub fn o2_expired_leases_are_rescued_and_old_workers_fenced(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let job = enqueue(&s, &c, new_job("noop", 5));
    let first = claim(&s, "dead-worker", 1, Duration::from_millis(10)).remove(0);
    std::thread::sleep(Duration::from_millis(50));
    let second = claim(&s, "live-worker", 1, LEASE);
    assert_eq!(second.len(), 1, "the expired job is rescued");
    let second = second.into_iter().next().unwrap();
    assert_eq!((second.id, second.attempt), (job.id, 2));
    let hb = write(
        &s,
        &c,
        vec![Op::Jobs(JobOp::HeartbeatJob {
            id: first.id,
            attempt: first.attempt,
            lease: LEASE,
        })],
    )
    .unwrap_err();
    assert_eq!(hb.kind(), ErrorKind::Conflict);
    assert!(hb.to_string().contains("lease was lost"), "{hb}");
    assert_eq!(
        finish(&s, &first, JobResult::Succeeded).unwrap_err().kind(),
        ErrorKind::Conflict,
        "a zombie cannot complete a rescued job"
    );
    let done = finish(&s, &second, JobResult::Succeeded).unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let attempts = s.jobs().attempts(&c.namespace, job.id).unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [AttemptOutcome::Lost, AttemptOutcome::Succeeded]
    );
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("dead-worker")
    );
}

/// O2: failures retry until attempts run out, then the job is dead with its
/// error history; a non-retryable error is dead at once; others still run.
pub fn o2_failing_jobs_retry_then_die_without_blocking_others(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let poison = enqueue(&s, &c, new_job("noop", 2));
    let fatal = enqueue(&s, &c, new_job("noop", 9));
    let good = enqueue(&s, &c, new_job("noop", 1));
    let now = kontextual_model::now();
    for j in claim(&s, "w", 10, LEASE) {
        let r = if j.id == poison.id {
            JobResult::Failed {
                error: "boom 1".into(),
                retry_at: Some(now),
            }
        } else if j.id == fatal.id {
            JobResult::Failed {
                error: "bad input".into(),
                retry_at: None,
            }
        } else {
            JobResult::Succeeded
        };
        finish(&s, &j, r).unwrap();
    }
    let p = s.jobs().get(&c.namespace, poison.id).unwrap().unwrap();
    assert_eq!(
        (p.state, p.last_error.as_deref()),
        (JobState::Failed, Some("boom 1"))
    );
    assert_eq!(
        s.jobs().get(&c.namespace, fatal.id).unwrap().unwrap().state,
        JobState::Dead
    );
    assert_eq!(
        s.jobs().get(&c.namespace, good.id).unwrap().unwrap().state,
        JobState::Succeeded
    );
    let again = claim(&s, "w", 10, LEASE);
    assert_eq!(again.len(), 1);
    let dead = finish(
        &s,
        &again[0],
        JobResult::Failed {
            error: "boom 2".into(),
            retry_at: Some(now),
        },
    )
    .unwrap();
    assert_eq!((dead.state, dead.attempt), (JobState::Dead, 2));
    let errors: Vec<_> = s
        .jobs()
        .attempts(&c.namespace, poison.id)
        .unwrap()
        .into_iter()
        .map(|a| a.error.unwrap_or_default())
        .collect();
    assert_eq!(errors, ["boom 1", "boom 2"]);
    assert!(claim(&s, "w", 10, LEASE).is_empty());
}

/// O2: a unique key dedupes while a job waits; once it runs, a new one may queue.
pub fn o2_unique_jobs_are_not_queued_twice(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let mut a = new_job("reindex", 3);
    a.unique_key = Some("reindex:handbook".into());
    let first = enqueue(&s, &c, a.clone());
    a.id = JobId::new();
    let changes = write(&s, &c, vec![Op::Jobs(JobOp::EnqueueJob(a.clone()))]).unwrap();
    assert!(
        matches!(&changes[0], Change::JobUnchanged { job } if job.id == first.id),
        "{changes:?}"
    );
    claim(&s, "w", 1, LEASE);
    a.id = JobId::new();
    let next = enqueue(&s, &c, a);
    assert_ne!(
        next.id, first.id,
        "a running job does not absorb a new request"
    );
    let actions: Vec<_> = s
        .audit()
        .records(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.draft.action == "job.enqueue")
        .collect();
    assert_eq!(actions.len(), 2, "the deduplicated request wrote nothing");
    let bad = write(
        &s,
        &c,
        vec![Op::Jobs(JobOp::EnqueueJob(new_job("Bad Kind", 1)))],
    )
    .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
}

/// O2: cancel, quarantine, release and retry: idempotent, audited, and a
/// running job stops cooperatively (its worker sees the request).
pub fn o2_recovery_actions_are_idempotent_and_audited(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let q = enqueue(&s, &c, new_job("noop", 1));
    let (j, changed) = act(&s, &c, q.id, JobAction::Cancel).unwrap();
    assert!(changed && j.state == JobState::Cancelled);
    let (_, changed) = act(&s, &c, q.id, JobAction::Cancel).unwrap();
    assert!(!changed, "cancelling twice changes nothing");
    let (j, _) = act(&s, &c, q.id, JobAction::Retry).unwrap();
    assert_eq!((j.state, j.max_attempts), (JobState::Queued, 1));
    let (j, _) = act(&s, &c, q.id, JobAction::Quarantine).unwrap();
    assert_eq!(j.state, JobState::Quarantined);
    assert!(
        claim(&s, "w", 10, LEASE).is_empty(),
        "quarantined jobs are not processed"
    );
    assert_eq!(
        act(&s, &c, q.id, JobAction::Retry).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let (j, changed) = act(&s, &c, q.id, JobAction::Release).unwrap();
    assert!(changed && j.state == JobState::Queued);
    let (_, changed) = act(&s, &c, q.id, JobAction::Release).unwrap();
    assert!(!changed);
    let running = claim(&s, "w", 10, LEASE).remove(0);
    let (j, changed) = act(&s, &c, q.id, JobAction::Cancel).unwrap();
    assert!(changed);
    assert_eq!(
        (j.state, j.stop_requested),
        (JobState::Running, Some(JobState::Cancelled))
    );
    let hb = write(
        &s,
        &c,
        vec![Op::Jobs(JobOp::HeartbeatJob {
            id: running.id,
            attempt: running.attempt,
            lease: LEASE,
        })],
    )
    .unwrap();
    assert!(
        matches!(&hb[0], Change::JobLeased { job } if job.stop_requested == Some(JobState::Cancelled))
    );
    let stopped = finish(&s, &running, JobResult::Stopped).unwrap();
    assert_eq!(stopped.state, JobState::Cancelled);
    let other = ctx("other");
    assert_eq!(
        act(&s, &other, q.id, JobAction::Retry).unwrap_err().kind(),
        ErrorKind::NotFound,
        "another namespace cannot see the job"
    );
    let actions: Vec<String> = s
        .audit()
        .records(0, 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.draft.action)
        .filter(|a| a.starts_with("job.") && a != "job.enqueue")
        .collect();
    assert_eq!(
        actions,
        [
            "job.cancel",
            "job.retry",
            "job.quarantine",
            "job.release",
            "job.cancel"
        ]
    );
}

/// K6/O1: a run started by a job attempt points at the job, and the
/// attempt at the run; finished jobs are pruned after retention.
pub fn k6_job_attempts_and_runs_link_both_ways(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let job = enqueue(&s, &c, new_job("noop", 1));
    let j = claim(&s, "w", 1, LEASE).remove(0);
    let run = RunId::new();
    write(
        &s,
        &c,
        vec![
            Op::Runs(RunOp::StartRun {
                id: run,
                kind: "noop".into(),
                input: serde_json::json!({}),
                owner: "test".into(),
                job: Some((j.id, j.attempt)),
            }),
            Op::Runs(RunOp::FinishRun {
                id: run,
                status: RunStatus::Succeeded,
                manifest: serde_json::json!({}),
            }),
        ],
    )
    .unwrap();
    assert_eq!(
        s.runs().get(&c.namespace, run).unwrap().unwrap().job_id,
        Some(job.id)
    );
    assert_eq!(
        s.jobs().attempts(&c.namespace, job.id).unwrap()[0].run_id,
        Some(run)
    );
    finish(&s, &j, JobResult::Succeeded).unwrap();
    let keep = enqueue(&s, &c, new_job("noop", 1));
    write(
        &s,
        &c,
        vec![Op::Jobs(JobOp::PruneJobs {
            finished_before: kontextual_model::now() + jiff::SignedDuration::from_secs(1),
        })],
    )
    .unwrap();
    assert!(
        s.jobs().get(&c.namespace, job.id).unwrap().is_none(),
        "pruned"
    );
    assert!(
        s.jobs().get(&c.namespace, keep.id).unwrap().is_some(),
        "queued jobs stay"
    );
}

/// O2: quarantining an artifact is audited, emits an event for the search
/// projection, is listed, and is released.
pub fn o2_artifacts_are_quarantined_and_released(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    write(
        &s,
        &c,
        vec![
            Op::Knowledge(KnowledgeOp::CreateCollection {
                name: coll("q"),
                description: String::new(),
                if_absent: true,
            }),
            Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("q"),
                name("a.md"),
                Content::Bytes(b"x".to_vec()),
            ))),
        ],
    )
    .unwrap();
    let key = ArtifactKey::Name {
        collection: coll("q"),
        name: name("a.md"),
    };
    write(
        &s,
        &c,
        vec![Op::Access(AccessOp::QuarantineArtifact {
            key: key.clone(),
            reason: "malware scan".into(),
        })],
    )
    .unwrap();
    assert_eq!(
        write(
            &s,
            &c,
            vec![Op::Access(AccessOp::QuarantineArtifact {
                key: key.clone(),
                reason: "again".into()
            })]
        )
        .unwrap_err()
        .kind(),
        ErrorKind::AlreadyExists
    );
    let listed = s.access().quarantines(&c.namespace, None).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason, "malware scan");
    write(
        &s,
        &c,
        vec![Op::Access(AccessOp::ReleaseArtifact { key: key.clone() })],
    )
    .unwrap();
    assert_eq!(
        write(&s, &c, vec![Op::Access(AccessOp::ReleaseArtifact { key })])
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let events: Vec<String> = s
        .feed()
        .events(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.draft.kind)
        .filter(|k| k.ends_with("quarantined") || k.ends_with("released"))
        .collect();
    assert_eq!(events, ["artifact.quarantined", "artifact.released"]);
}

/// X3: bookkeeping operations (`Op::is_bookkeeping`, which the PostgreSQL
/// engine runs without the writer lock) never yield an audited change nor
/// extend the audit chain — on every engine. Each is run on its own, on
/// real state, so the engine does all of its work.
pub fn x3_bookkeeping_ops_are_never_audited(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let job = enqueue(&s, &c, new_job("noop", 3));
    let run = RunId::new();
    write(
        &s,
        &c,
        vec![Op::Runs(RunOp::StartRun {
            id: run,
            kind: "ingest".into(),
            input: serde_json::json!({}),
            owner: "host:1:1".into(),
            job: None,
        })],
    )
    .unwrap();
    let begin = |key: &str| {
        Op::Access(AccessOp::BeginIdempotent {
            scope: "agent:a".into(),
            key: key.into(),
            request_hash: kontextual_model::Digest::of(b"body"),
            expire_before: kontextual_model::Timestamp::UNIX_EPOCH,
        })
    };
    write(&s, &c, vec![begin("k1"), begin("k2")]).unwrap();
    let bookkeeping = vec![
        Op::Jobs(JobOp::ClaimJobs {
            worker: "w".into(),
            kinds: Vec::new(),
            limit: 1,
            lease: Duration::from_secs(60),
        }),
        Op::Jobs(JobOp::HeartbeatJob {
            id: job.id,
            attempt: 1,
            lease: Duration::from_secs(60),
        }),
        Op::Jobs(JobOp::FinishJob {
            id: job.id,
            attempt: 1,
            result: JobResult::Succeeded,
            report: None,
        }),
        Op::Runs(RunOp::RunStep {
            id: run,
            name: "write".into(),
            status: RunStatus::Succeeded,
            detail: serde_json::json!({ "files": 1 }),
        }),
        Op::Feed(FeedOp::AckOutbox {
            consumer: "projection".into(),
            seq: 1,
        }),
        Op::Access(AccessOp::TouchKeys {
            uses: vec![("no-such-key".into(), kontextual_model::now())],
        }),
        Op::Access(AccessOp::RecordAccess {
            entries: vec![kontextual_model::AccessEntry {
                seq: 0,
                at: kontextual_model::now(),
                namespace: c.namespace.clone(),
                actor: c.actor.clone(),
                key_id: None,
                action: "read".into(),
                target: "h/a.md".into(),
                correlation_id: c.correlation_id.to_string(),
            }],
        }),
        Op::Access(AccessOp::FinishIdempotent {
            scope: "agent:a".into(),
            key: "k1".into(),
            status: 200,
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
        }),
        Op::Access(AccessOp::AbandonIdempotent {
            scope: "agent:a".into(),
            key: "k2".into(),
        }),
        Op::Access(AccessOp::PruneAccessLog {
            older_than: kontextual_model::Timestamp::UNIX_EPOCH,
        }),
    ];
    for op in bookkeeping {
        let what = format!("{op:?}");
        assert!(op.is_bookkeeping(), "{what}");
        let head = s.audit().head().unwrap();
        let changes = write(&s, &c, vec![op]).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            changes.iter().all(|ch| ch.audit_draft().is_none()),
            "{what} yielded an audited change: {changes:?}"
        );
        assert_eq!(s.audit().head().unwrap(), head, "{what} extended the chain");
    }
    assert_eq!(
        s.jobs().get(&c.namespace, job.id).unwrap().map(|j| j.state),
        Some(JobState::Succeeded),
        "the job went through claim, heartbeat and finish"
    );
    assert_eq!(s.runs().steps(&c.namespace, run).unwrap().len(), 1);
    // and an operation that can be audited is not bookkeeping
    assert!(!Op::Jobs(JobOp::EnqueueJob(new_job("noop", 1))).is_bookkeeping());
    assert!(!begin("k3").is_bookkeeping());
}

/// O2: a job whose unique key another queued job took meanwhile is not
/// queued twice: given back by its worker it is cancelled (the queued one
/// does the work), and an operator's retry is refused. The batch goes on
/// after the refused statement on every engine (PostgreSQL would abort the
/// whole transaction on it without a savepoint).
pub fn o2_unique_key_conflicts_cancel_or_refuse_without_failing_the_batch(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let mut a = new_job("reindex", 3);
    a.unique_key = Some("reindex:handbook".into());
    let first = enqueue(&s, &c, a.clone());
    let running = claim(&s, "w", 1, LEASE).remove(0);
    assert_eq!(running.id, first.id);
    a.id = JobId::new();
    let queued = enqueue(&s, &c, a);
    assert_ne!(queued.id, first.id);
    let other = new_job("noop", 1);
    let changes = write(
        &s,
        &c,
        vec![
            Op::Jobs(JobOp::FinishJob {
                id: running.id,
                attempt: running.attempt,
                result: JobResult::Returned,
                report: None,
            }),
            Op::Jobs(JobOp::EnqueueJob(other.clone())),
        ],
    )
    .unwrap();
    assert!(
        matches!(
            &changes[..],
            [
                Change::JobFinished { id, state: JobState::Cancelled },
                Change::JobEnqueued { job },
            ] if *id == first.id && job.id == other.id
        ),
        "{changes:?}"
    );
    let err = act(&s, &c, first.id, JobAction::Retry).unwrap_err();
    assert!(
        matches!(&err, crate::StoreError::Refused { why, .. } if why.contains("reindex:handbook")),
        "{err:?}"
    );
    assert_eq!(
        s.jobs()
            .get(&c.namespace, first.id)
            .unwrap()
            .map(|j| j.state),
        Some(JobState::Cancelled),
        "the refused retry changed nothing"
    );
    assert_eq!(
        s.jobs()
            .get(&c.namespace, queued.id)
            .unwrap()
            .map(|j| j.state),
        Some(JobState::Queued)
    );
}

/// O1: a worker's batch of succeeded jobs is finished in one write, as one
/// by one: every job succeeds; a batch holding a job whose lease was lost
/// is refused whole (Conflict, naming that job) and changes nothing.
pub fn o1_a_batch_of_successes_finishes_as_one_by_one(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    for _ in 0..5 {
        enqueue(&s, &c, new_job("noop", 3));
    }
    let jobs = claim(&s, "batch-worker", 5, LEASE);
    assert_eq!(jobs.len(), 5);
    let finish_all = |jobs: &[Job]| {
        write(
            &s,
            &c,
            jobs.iter()
                .map(|j| {
                    Op::Jobs(JobOp::FinishJob {
                        id: j.id,
                        attempt: j.attempt,
                        result: JobResult::Succeeded,
                        report: Some(serde_json::json!({ "job": j.id.to_string() })),
                    })
                })
                .collect(),
        )
    };
    // one of them rescued by another worker first: the batch is refused
    let mut stale = jobs[..3].to_vec();
    stale[1].attempt += 1;
    let e = finish_all(&stale).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains(&stale[1].id.to_string()), "{e}");
    for j in &jobs {
        let now = s.jobs().get(&c.namespace, j.id).unwrap().expect("job");
        assert_eq!(now.state, JobState::Running, "nothing changed");
    }
    let changes = finish_all(&jobs).unwrap();
    assert_eq!(
        changes,
        jobs.iter()
            .map(|j| Change::JobFinished {
                id: j.id,
                state: JobState::Succeeded
            })
            .collect::<Vec<_>>(),
        "one change per job, in order"
    );
    for j in &jobs {
        let done = s.jobs().get(&c.namespace, j.id).unwrap().expect("job");
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(
            done.report,
            Some(serde_json::json!({ "job": j.id.to_string() }))
        );
        assert!(done.finished_at.is_some());
        assert_eq!(done.lease_expires_at, None);
    }
    // finished jobs cannot be finished again
    assert_eq!(finish_all(&jobs).unwrap_err().kind(), ErrorKind::Conflict);
}
