//! Grants (X2): give and take back an actor's permission on the namespace
//! or on one collection. Administering grants needs the admin permission on
//! the namespace.

use kontextual_model::{Actor, Change, CollectionName, Grant, GrantPermission, GrantScope};
use kontextual_store::Op;

use crate::{Caller, Error, Permission, Resource, Result, Services};

impl Services {
    pub fn grant(
        &self,
        caller: &Caller,
        actor: Actor,
        permission: GrantPermission,
        on: GrantOn<'_>,
    ) -> Result<Grant> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("grants"))?;
        let scope = scope(on)?;
        let changes = self.write(
            caller,
            vec![Op::CreateGrant {
                actor,
                permission,
                scope,
            }],
        )?;
        self.forget_verified_keys();
        match changes.into_iter().next() {
            Some(Change::GrantCreated { grant }) => Ok(grant),
            other => Err(Error::InvalidInput(format!(
                "unexpected store answer {other:?}"
            ))),
        }
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
        let changes = self.write(
            caller,
            vec![Op::DeleteGrant {
                actor,
                permission,
                scope,
            }],
        )?;
        self.forget_verified_keys();
        match changes.into_iter().next() {
            Some(Change::GrantDeleted { grant }) => Ok(grant),
            other => Err(Error::InvalidInput(format!(
                "unexpected store answer {other:?}"
            ))),
        }
    }

    /// Grants of the namespace, optionally of one actor.
    pub fn grant_list(&self, caller: &Caller, actor: Option<&Actor>) -> Result<Vec<Grant>> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("grants"))?;
        Ok(self.store().grants(&caller.namespace, actor)?)
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

impl Services {
    /// Puts an artifact under legal hold (admin on the artifact).
    pub fn hold_set(
        &self,
        caller: &Caller,
        r: &kontextual_model::ArtifactRef,
        reason: &str,
    ) -> Result<kontextual_model::Hold> {
        self.artifact_for(caller, r, Permission::Admin)?;
        let changes = self.write(
            caller,
            vec![Op::SetHold {
                key: self.key(r)?,
                reason: reason.to_owned(),
            }],
        )?;
        match changes.into_iter().next() {
            Some(Change::HoldSet { hold }) => Ok(hold),
            other => Err(Error::InvalidInput(format!(
                "unexpected store answer {other:?}"
            ))),
        }
    }

    pub fn hold_release(
        &self,
        caller: &Caller,
        r: &kontextual_model::ArtifactRef,
    ) -> Result<kontextual_model::Hold> {
        self.artifact_for(caller, r, Permission::Admin)?;
        let changes = self.write(caller, vec![Op::ReleaseHold { key: self.key(r)? }])?;
        match changes.into_iter().next() {
            Some(Change::HoldReleased { hold }) => Ok(hold),
            other => Err(Error::InvalidInput(format!(
                "unexpected store answer {other:?}"
            ))),
        }
    }

    /// Active holds of the namespace.
    pub fn hold_list(&self, caller: &Caller) -> Result<Vec<kontextual_model::Hold>> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("legal holds"),
        )?;
        Ok(self.store().holds(&caller.namespace)?)
    }
}

impl Services {
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
        let changes = self.write(caller, vec![Op::SetClearance { actor, level }])?;
        self.forget_verified_keys();
        match changes.into_iter().next() {
            Some(Change::ClearanceSet { clearance }) => Ok(clearance),
            other => Err(Error::InvalidInput(format!(
                "unexpected store answer {other:?}"
            ))),
        }
    }

    pub fn clearance_list(&self, caller: &Caller) -> Result<Vec<kontextual_model::Clearance>> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("clearances"),
        )?;
        Ok(self.store().clearances(&caller.namespace, None)?)
    }
}
