//! Operation runs: who owns a running run, finding runs whose process died,
//! and reading runs back.

use kontextual_model::{Actor, CorrelationId, Run, RunId, RunStatus, RunStep};
use kontextual_store::{Op, Page, PageRequest, RunOp, WriteBatch, WriteContext};

use crate::{Caller, Error, Kernel, Permission, Resource, Result};

/// This process, as a run owner: `host:pid:start-ticks`. The start time
/// tells a live process from a later one that reused the pid.
pub fn this_process() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", hostname(), start_ticks(pid).unwrap_or(0))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may contain spaces; fields restart after ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the owner of a run is certainly gone. Owners on another host
/// cannot be checked from here and count as alive.
fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(ticks), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    // Without /proc (not Linux) no process can be judged: never guess "dead".
    if start_ticks(std::process::id()).is_none() {
        return false;
    }
    let (Ok(pid), Ok(ticks)) = (pid.parse::<u32>(), ticks.parse::<u64>()) else {
        return false;
    };
    start_ticks(pid) != Some(ticks)
}

impl Kernel {
    /// Marks runs whose owning process died as `interrupted` (K6). Called
    /// when a store is opened for writing; safe to call any time.
    pub fn recover_interrupted_runs(&self) -> Result<Vec<RunId>> {
        let mut done = Vec::new();
        for run in self.store().runs().running()? {
            let reason = if owner_is_dead(&run.owner) {
                format!("the process that ran it ({}) is gone", run.owner)
            } else if let Some(why) = self.orphaned_by_its_job(&run)? {
                why
            } else {
                continue;
            };
            let ctx = WriteContext {
                namespace: run.namespace.clone(),
                actor: Actor::system(),
                correlation_id: CorrelationId::new(),
                run_id: None,
            };
            let manifest = serde_json::json!({
                "interrupted": {
                    "reason": reason,
                    "noticed_by": this_process(),
                },
                "audit_head": self.store().audit().head()?,
            });
            let op = Op::Runs(RunOp::FinishRun {
                id: run.id,
                status: RunStatus::Interrupted,
                manifest,
            });
            match self.store().write(WriteBatch { ctx, ops: vec![op] }) {
                Ok(_) => done.push(run.id),
                // someone else noticed first
                Err(e) if e.kind() == kontextual_store::ErrorKind::Conflict => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Why a running run that a job attempt started can no longer finish,
    /// judged from the job alone, so it works for a worker on any host:
    /// the job is gone, no longer running, or the attempt that made this
    /// run has ended (its lease expired and the job was rescued). A worker
    /// finishes its run before it ends its attempt, so none of these holds
    /// for a run still in progress.
    fn orphaned_by_its_job(&self, run: &Run) -> Result<Option<String>> {
        let Some(job_id) = run.job_id else {
            return Ok(None);
        };
        let Some(job) = self.store().jobs().get(&run.namespace, job_id)? else {
            return Ok(Some(format!("its job {job_id} no longer exists")));
        };
        if job.state != kontextual_model::JobState::Running {
            return Ok(Some(format!(
                "its job {job_id} is {} and no attempt of it is running",
                job.state
            )));
        }
        let ended = self
            .store()
            .jobs()
            .attempts(&run.namespace, job_id)?
            .into_iter()
            .find(|a| a.run_id == Some(run.id) && a.finished_at.is_some());
        Ok(ended.map(|a| {
            format!(
                "attempt {} of its job {job_id}, on worker {}, ended {}",
                a.attempt,
                a.worker,
                a.error.as_deref().unwrap_or("without finishing it")
            )
        }))
    }

    pub fn run_show(&self, caller: &Caller, id: RunId) -> Result<(Run, Vec<RunStep>)> {
        self.authorize(caller, Permission::Read, &Resource::Namespace("runs"))?;
        let run = self
            .store()
            .runs()
            .get(&caller.namespace, id)?
            .ok_or_else(|| Error::NotFound(format!("run {id}")))?;
        let steps = self.store().runs().steps(&caller.namespace, id)?;
        Ok((run, steps))
    }

    pub fn run_list(
        &self,
        caller: &Caller,
        status: Option<RunStatus>,
        page: &PageRequest,
    ) -> Result<Page<Run>> {
        self.authorize(caller, Permission::Read, &Resource::Namespace("runs"))?;
        Ok(self.store().runs().list(&caller.namespace, status, page)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontextual_store::JobOp;

    #[test]
    fn k6_this_process_is_alive_and_a_stranger_is_dead() {
        let me = this_process();
        assert!(!owner_is_dead(&me), "{me}");
        let host = hostname();
        assert!(
            owner_is_dead(&format!("{host}:{}:1", std::process::id())),
            "same pid, other start"
        );
        assert!(owner_is_dead(&format!("{host}:4000000:5")), "no such pid");
        assert!(
            !owner_is_dead("elsewhere:1:1"),
            "another host cannot be judged"
        );
    }

    /// K6/X7: a run started by a job attempt on another host (whose
    /// process cannot be checked from here) is marked interrupted once
    /// that attempt's lease expired and the job was rescued; the run of
    /// the attempt that took over is left alone.
    #[test]
    fn k6_runs_of_a_rescued_attempt_on_another_host_are_interrupted() {
        use kontextual_model::{JobId, Namespace};
        use kontextual_store::sqlite::SqliteBackend;
        use kontextual_store::{NewJob, Store};
        use std::time::Duration;

        let store = Store::new(SqliteBackend::memory().unwrap());
        let svc = crate::Kernel::new(store.clone(), Box::new(crate::AllowAll));
        let ctx = WriteContext {
            namespace: Namespace::default(),
            actor: Actor::system(),
            correlation_id: CorrelationId::new(),
            run_id: None,
        };
        let write = |ops: Vec<Op>| {
            store
                .write(WriteBatch {
                    ctx: ctx.clone(),
                    ops,
                })
                .unwrap()
        };
        let job = JobId::new();
        write(vec![Op::Jobs(JobOp::EnqueueJob(NewJob {
            id: job,
            kind: "noop".into(),
            payload: serde_json::json!({}),
            max_attempts: 3,
            run_at: None,
            unique_key: None,
            key_id: None,
            scopes: None,
        }))]);
        let claim = |worker: &str, lease: Duration| {
            write(vec![Op::Jobs(JobOp::ClaimJobs {
                worker: worker.into(),
                kinds: Vec::new(),
                limit: 1,
                lease,
            })])
        };
        let start = |owner: &str, attempt: u32| {
            let id = RunId::new();
            write(vec![Op::Runs(RunOp::StartRun {
                id,
                kind: "noop".into(),
                input: serde_json::json!({}),
                owner: owner.into(),
                job: Some((job, attempt)),
            })]);
            id
        };
        let status = |id: RunId| {
            store
                .runs()
                .get(&ctx.namespace, id)
                .unwrap()
                .unwrap()
                .status
        };

        claim("host-a:1:1/w0", Duration::from_millis(1));
        let first = start("host-a:1:1", 1);
        // while the attempt holds the job, its run is left alone
        write(vec![Op::Jobs(JobOp::HeartbeatJob {
            id: job,
            attempt: 1,
            lease: Duration::from_secs(60),
        })]);
        assert!(svc.recover_interrupted_runs().unwrap().is_empty());
        assert_eq!(status(first), RunStatus::Running);

        // host A goes silent: the lease runs out, the job is rescued and
        // claimed again by host B, which starts its own run
        write(vec![Op::Jobs(JobOp::HeartbeatJob {
            id: job,
            attempt: 1,
            lease: Duration::from_millis(1),
        })]);
        std::thread::sleep(Duration::from_millis(20));
        claim("host-b:2:2/w0", Duration::from_secs(60));
        let second = start("host-b:2:2", 2);
        assert_eq!(svc.recover_interrupted_runs().unwrap(), vec![first]);
        assert_eq!(status(first), RunStatus::Interrupted);
        assert_eq!(status(second), RunStatus::Running);
        let manifest = store
            .runs()
            .get(&ctx.namespace, first)
            .unwrap()
            .unwrap()
            .manifest
            .unwrap();
        let reason = manifest["interrupted"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("attempt 1") && reason.contains("host-a"),
            "{reason}"
        );
    }
}
