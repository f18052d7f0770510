//! The policy port. Every service operation asks it before touching the
//! store; a denial is itself audited. Grants, classifications and holds
//! arrive with the access-control work; until then the local admin may do
//! everything.

use kontextual_model::{AuditDraft, Outcome};
use kontextual_store::Op;

use crate::{Caller, Error, Kernel, Result};

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

/// What a permission is asked for.
#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    /// Something of the whole namespace (the audit log, keys, grants, runs,
    /// the index, context packages, creating collections): only
    /// namespace-wide grants cover it. The text names it in messages.
    Namespace(&'a str),
    Collection(&'a str),
    Artifact {
        collection: &'a str,
        name: &'a str,
    },
}

impl std::fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Namespace(what) => f.write_str(what),
            Resource::Collection(c) => write!(f, "collection {c}"),
            Resource::Artifact { collection, name } => write!(
                f,
                "artifact {collection}/{}",
                kontextual_model::names::escape_name(name)
            ),
        }
    }
}

/// Decides whether a caller may do something to a resource.
pub trait Policy: Send + Sync {
    fn allows(&self, caller: &Caller, permission: Permission, resource: &Resource<'_>) -> bool;
}

/// Allows everything: the embedded store's local administrator.
pub struct AllowAll;

impl Policy for AllowAll {
    fn allows(&self, _: &Caller, _: Permission, _: &Resource<'_>) -> bool {
        true
    }
}

/// Access control for callers with an API key (X1, X2): the key's scopes
/// bound what the caller may do at all (`read`; `write` implies read;
/// `admin` implies both), and the actor's grants say where — on the whole
/// namespace, a collection and its artifacts, or one artifact. Nothing is allowed that
/// no grant allows. A caller without a key (the local administrator on its
/// own data directory) may do everything.
pub struct AccessPolicy;

impl Policy for AccessPolicy {
    fn allows(&self, caller: &Caller, permission: Permission, resource: &Resource<'_>) -> bool {
        use kontextual_model::{GrantPermission as G, GrantScope, Scope};
        let Some(scopes) = &caller.scopes else {
            return true;
        };
        let has = |s: Scope| scopes.contains(&s);
        let scoped = match permission {
            Permission::Read => has(Scope::Read) || has(Scope::Write) || has(Scope::Admin),
            Permission::Write => has(Scope::Write) || has(Scope::Admin),
            Permission::Admin => has(Scope::Admin),
        };
        if !scoped {
            return false;
        }
        let wanted = match permission {
            Permission::Read => G::Read,
            Permission::Write => G::Write,
            Permission::Admin => G::Admin,
        };
        caller.grants.iter().flat_map(|g| g.iter()).any(|g| {
            g.permission.covers(wanted)
                && match (&g.scope, resource) {
                    (GrantScope::Namespace, _) => true,
                    (GrantScope::Collection(c), Resource::Collection(x)) => c.as_str() == *x,
                    (GrantScope::Collection(c), Resource::Artifact { collection, .. }) => {
                        c.as_str() == *collection
                    }
                    (GrantScope::Collection(_), Resource::Namespace(_)) => false,
                    (GrantScope::Artifact(c, n), Resource::Artifact { collection, name }) => {
                        c.as_str() == *collection && n.as_str() == *name
                    }
                    (GrantScope::Artifact(..), _) => false,
                }
        })
    }
}

impl Kernel {
    /// Whether the policy allows it, without auditing: for filtering what a
    /// caller sees (search hits, listings), where a refusal is not a denial.
    pub fn can(&self, caller: &Caller, permission: Permission, resource: &Resource<'_>) -> bool {
        self.policy.allows(caller, permission, resource)
    }

    /// The one read rule (X2) for an artifact the caller has in hand: a grant
    /// that covers reading it, a clearance that reaches its classification,
    /// and — unless the caller may administer it — no quarantine. Every
    /// single read, listing, count, filter and reference check asks this (or
    /// pushes the same three conditions into the store query,
    /// [`Kernel::listing_visibility`]), so what a caller may not read
    /// cannot be told apart from what does not exist.
    pub fn readable(&self, caller: &Caller, a: &kontextual_model::Artifact) -> bool {
        if caller.scopes.is_none() {
            return true;
        }
        let resource = Resource::Artifact {
            collection: a.collection.as_str(),
            name: a.name.as_str(),
        };
        self.can(caller, Permission::Read, &resource)
            && self.cleared(caller, a.classification)
            && (self.can(caller, Permission::Admin, &resource)
                || !self.is_quarantined(&caller.namespace, a.id).unwrap_or(true))
    }

    /// The read rule's per-artifact conditions for a listing whose grant
    /// already covers every artifact it can return (a collection or the
    /// namespace): the caller's clearance, and quarantined artifacts left out
    /// unless the caller may administer `scope`.
    pub fn listing_visibility(
        &self,
        caller: &Caller,
        scope: &Resource<'_>,
    ) -> (Option<kontextual_model::Classification>, bool) {
        if caller.scopes.is_none() {
            return (None, false);
        }
        (
            caller.clearance,
            !self.can(caller, Permission::Admin, scope),
        )
    }

    /// Whether the caller's clearance reaches a classification.
    pub fn cleared(&self, caller: &Caller, level: kontextual_model::Classification) -> bool {
        caller.clearance.is_none_or(|c| level <= c)
    }

    /// Checks the policy; a denial is appended to the audit chain and
    /// returned as an error. A caller who may not even read a collection or
    /// artifact is told it is not found, so ids and names cannot be probed.
    pub fn authorize(
        &self,
        caller: &Caller,
        permission: Permission,
        resource: &Resource<'_>,
    ) -> Result<()> {
        if self.policy.allows(caller, permission, resource) {
            if permission == Permission::Read {
                self.record_access(caller, "read", resource.to_string());
            }
            return Ok(());
        }
        let target = resource.to_string();
        self.audit_denial(caller, permission, &target);
        let hidden = !matches!(resource, Resource::Namespace(_))
            && !self.policy.allows(caller, Permission::Read, resource);
        if hidden {
            return Err(Error::NotFound(target));
        }
        Err(Error::Denied {
            actor: caller.actor.to_string(),
            permission: permission.as_str(),
            target,
        })
    }

    /// Appends the denial of a write a legal hold refused (`what`: the
    /// refused operation and its target).
    pub(crate) fn audit_hold_denial(&self, caller: &Caller, what: &str) {
        let draft = AuditDraft {
            action: "policy.deny.write".to_owned(),
            target_kind: "resource".into(),
            target_id: what.to_owned(),
            target_name: None,
            revision: None,
            prev_digest: None,
            digest: None,
            outcome: Outcome::Denied,
            detail: Some(serde_json::json!({ "reason": "hold" })),
        };
        if let Err(e) = self.store().write(kontextual_store::WriteBatch {
            ctx: caller.write_ctx(),
            ops: vec![Op::Audit(draft)],
        }) {
            tracing::error!(error = %e, "could not audit a denial");
        }
    }

    /// Appends a denial to the audit chain.
    pub fn audit_denial(&self, caller: &Caller, permission: Permission, target: &str) {
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
    }
}
