//! Grants (X2): give and take back an actor's permission on the namespace
//! or on one collection. Administering grants needs the admin permission on
//! the namespace.

use kontextual_model::{Actor, Change, CollectionName, Grant, GrantPermission, GrantScope};
use kontextual_store::{AccessOp, Op};

use crate::{Caller, Error, Kernel, Permission, Resource, Result};

impl Kernel {
    pub fn grant(
        &self,
        caller: &Caller,
        actor: Actor,
        permission: GrantPermission,
        on: GrantOn<'_>,
    ) -> Result<Grant> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("grants"))?;
        let scope = scope(on)?;
        let grant = self.write_one(
            caller,
            Op::Access(AccessOp::CreateGrant {
                actor,
                permission,
                scope,
            }),
            |c| match c {
                Change::GrantCreated { grant } => Some(grant),
                _ => None,
            },
        )?;
        self.forget_verified_keys();
        Ok(grant)
    }

    pub fn revoke_grant(
        &self,
        caller: &Caller,
        actor: Actor,
        permission: GrantPermission,
        on: GrantOn<'_>,
    ) -> Result<Grant> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("grants"))?;
        let scope = scope(on)?;
        let grant = self.write_one(
            caller,
            Op::Access(AccessOp::DeleteGrant {
                actor,
                permission,
                scope,
            }),
            |c| match c {
                Change::GrantDeleted { grant } => Some(grant),
                _ => None,
            },
        )?;
        self.forget_verified_keys();
        Ok(grant)
    }

    /// Grants of the namespace, optionally of one actor.
    pub fn grant_list(&self, caller: &Caller, actor: Option<&Actor>) -> Result<Vec<Grant>> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("grants"))?;
        Ok(self.store().access().grants(&caller.namespace, actor)?)
    }
}

/// What a grant is on.
#[derive(Clone, Copy, Debug)]
pub enum GrantOn<'a> {
    Namespace,
    Collection(&'a str),
    /// `COLLECTION/NAME`.
    Artifact(&'a str),
}

fn scope(on: GrantOn<'_>) -> Result<GrantScope> {
    Ok(match on {
        GrantOn::Namespace => GrantScope::Namespace,
        GrantOn::Collection(c) => GrantScope::Collection(CollectionName::new(c)?),
        GrantOn::Artifact(r) => match r.parse::<kontextual_model::ArtifactRef>()? {
            kontextual_model::ArtifactRef::Name {
                collection,
                name,
                section: None,
            } => GrantScope::Artifact(collection, name),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "grant on {r:?}: name the artifact as COLLECTION/NAME"
                )));
            }
        },
    })
}

impl Kernel {
    /// Active holds of the namespace.
    pub fn hold_list(&self, caller: &Caller) -> Result<Vec<kontextual_model::Hold>> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("legal holds"),
        )?;
        Ok(self.store().access().holds(&caller.namespace)?)
    }
}

impl Kernel {
    /// Sets the highest classification an actor may read (admin).
    pub fn clearance_set(
        &self,
        caller: &Caller,
        actor: Actor,
        level: kontextual_model::Classification,
    ) -> Result<kontextual_model::Clearance> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("clearances"),
        )?;
        let clearance = self.write_one(
            caller,
            Op::Access(AccessOp::SetClearance { actor, level }),
            |c| match c {
                Change::ClearanceSet { clearance } => Some(clearance),
                _ => None,
            },
        )?;
        self.forget_verified_keys();
        Ok(clearance)
    }

    pub fn clearance_list(&self, caller: &Caller) -> Result<Vec<kontextual_model::Clearance>> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("clearances"),
        )?;
        Ok(self.store().access().clearances(&caller.namespace, None)?)
    }
}
