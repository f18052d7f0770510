//! The policy port. Every service operation asks it before touching the
//! store; a denial is itself audited. Grants, classifications and holds
//! arrive with the access-control work; until then the local admin may do
//! everything.

use kontextual_model::{AuditDraft, Outcome};
use kontextual_store::Op;

use crate::{Caller, Error, Result, Services};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "administer",
        }
    }
}

/// Decides whether a caller may do something to a target.
pub trait Policy: Send + Sync {
    fn allows(&self, caller: &Caller, permission: Permission, target: &str) -> bool;
}

/// Allows everything: the embedded store's local administrator.
pub struct AllowAll;

impl Policy for AllowAll {
    fn allows(&self, _: &Caller, _: Permission, _: &str) -> bool {
        true
    }
}

/// Enforces the scopes of the caller's API key: `read` allows reads,
/// `write` reads and writes, `admin` everything. A caller without a key (the
/// local administrator) may do everything. Grants per namespace and
/// collection narrow this further (next slice).
pub struct ScopePolicy;

impl Policy for ScopePolicy {
    fn allows(&self, caller: &Caller, permission: Permission, _: &str) -> bool {
        use kontextual_model::Scope;
        let Some(scopes) = &caller.scopes else {
            return true;
        };
        let has = |s: Scope| scopes.contains(&s);
        match permission {
            Permission::Read => has(Scope::Read) || has(Scope::Write) || has(Scope::Admin),
            Permission::Write => has(Scope::Write) || has(Scope::Admin),
            Permission::Admin => has(Scope::Admin),
        }
    }
}

impl Services {
    /// Whether the policy allows it, without auditing: for filtering what a
    /// caller sees (search hits), where a refusal is not a denial.
    pub(crate) fn can(&self, caller: &Caller, permission: Permission, target: &str) -> bool {
        self.policy.allows(caller, permission, target)
    }

    /// Checks the policy; a denial is appended to the audit chain and returned as an error.
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &str,
    ) -> Result<()> {
        if self.policy.allows(caller, permission, target) {
            return Ok(());
        }
        let draft = AuditDraft {
            action: format!("policy.deny.{}", permission.as_str()),
            target_kind: "resource".into(),
            target_id: target.to_owned(),
            target_name: None,
            revision: None,
            prev_digest: None,
            digest: None,
            outcome: Outcome::Denied,
            detail: None,
        };
        if let Err(e) = self.write(caller, vec![Op::Audit(draft)]) {
            tracing::error!(error = %e, "could not audit a denial");
        }
        Err(Error::Denied {
            actor: caller.actor.to_string(),
            permission: permission.as_str(),
            target: target.to_owned(),
        })
    }
}
