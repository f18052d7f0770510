//! Operation runs: who owns a running run, finding runs whose process died,
//! and reading runs back.

use kontextual_model::{Actor, CorrelationId, Run, RunId, RunStatus, RunStep};
use kontextual_store::{Op, Page, PageRequest, WriteBatch, WriteContext};

use crate::{Caller, Error, Permission, Resource, Result, Services};

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

impl Services {
    /// Marks runs whose owning process died as `interrupted` (K6). Called
    /// when a store is opened for writing; safe to call any time.
    pub fn recover_interrupted_runs(&self) -> Result<Vec<RunId>> {
        let mut done = Vec::new();
        for run in self.store().running_runs()? {
            if !owner_is_dead(&run.owner) {
                continue;
            }
            let ctx = WriteContext {
                namespace: run.namespace.clone(),
                actor: Actor::system(),
                correlation_id: CorrelationId::new(),
                run_id: None,
            };
            let manifest = serde_json::json!({
                "interrupted": {
                    "reason": format!("the process that ran it ({}) is gone", run.owner),
                    "noticed_by": this_process(),
                },
                "audit_head": self.store().audit_head()?,
            });
            let op = Op::FinishRun {
                id: run.id,
                status: RunStatus::Interrupted,
                manifest,
            };
            match self.store().write(WriteBatch { ctx, ops: vec![op] }) {
                Ok(_) => done.push(run.id),
                // someone else noticed first
                Err(e) if e.kind() == kontextual_store::ErrorKind::Conflict => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    pub fn run_show(&self, caller: &Caller, id: RunId) -> Result<(Run, Vec<RunStep>)> {
        self.authorize(caller, Permission::Read, &Resource::Namespace("runs"))?;
        let run = self
            .store()
            .run(&caller.namespace, id)?
            .ok_or_else(|| Error::NotFound(format!("run {id}")))?;
        let steps = self.store().run_steps(&caller.namespace, id)?;
        Ok((run, steps))
    }

    pub fn run_list(
        &self,
        caller: &Caller,
        status: Option<RunStatus>,
        page: &PageRequest,
    ) -> Result<Page<Run>> {
        self.authorize(caller, Permission::Read, &Resource::Namespace("runs"))?;
        Ok(self.store().runs(&caller.namespace, status, page)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
