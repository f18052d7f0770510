//! Legal holds and quarantines on artifacts (X2, O2): setting and
//! releasing them needs the admin permission on the artifact itself; the
//! lists are the kernel's.

use kontextual_model::Change;
use kontextual_store::{AccessOp, Op};

use crate::{Caller, Knowledge, Permission, Result};

impl Knowledge {
    /// Puts an artifact under legal hold (admin on the artifact).
    pub fn hold_set(
        &self,
        caller: &Caller,
        r: &kontextual_model::ArtifactRef,
        reason: &str,
    ) -> Result<kontextual_model::Hold> {
        self.artifact_for(caller, r, Permission::Admin)?;
        let hold = self.write_one(
            caller,
            Op::Access(AccessOp::SetHold {
                key: self.key(r)?,
                reason: reason.to_owned(),
            }),
            |c| match c {
                Change::HoldSet { hold } => Some(hold),
                _ => None,
            },
        )?;
        Ok(hold)
    }

    pub fn hold_release(
        &self,
        caller: &Caller,
        r: &kontextual_model::ArtifactRef,
    ) -> Result<kontextual_model::Hold> {
        self.artifact_for(caller, r, Permission::Admin)?;
        let hold = self.write_one(
            caller,
            Op::Access(AccessOp::ReleaseHold { key: self.key(r)? }),
            |c| match c {
                Change::HoldReleased { hold } => Some(hold),
                _ => None,
            },
        )?;
        Ok(hold)
    }

    /// Quarantines an artifact (admin on it): kept, but skipped by ingest,
    /// dropped from search and export until released.
    pub fn artifact_quarantine(
        &self,
        caller: &Caller,
        r: &kontextual_model::ArtifactRef,
        reason: &str,
    ) -> Result<kontextual_model::Hold> {
        self.artifact_for(caller, r, Permission::Admin)?;
        self.write_one(
            caller,
            Op::Access(AccessOp::QuarantineArtifact {
                key: self.key(r)?,
                reason: reason.to_owned(),
            }),
            |c| match c {
                Change::ArtifactQuarantined { quarantine } => Some(quarantine),
                _ => None,
            },
        )
    }

    pub fn artifact_release(
        &self,
        caller: &Caller,
        r: &kontextual_model::ArtifactRef,
    ) -> Result<kontextual_model::Hold> {
        self.artifact_for(caller, r, Permission::Admin)?;
        self.write_one(
            caller,
            Op::Access(AccessOp::ReleaseArtifact { key: self.key(r)? }),
            |c| match c {
                Change::ArtifactReleased { quarantine } => Some(quarantine),
                _ => None,
            },
        )
    }
}
