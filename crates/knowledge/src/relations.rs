//! Typed relationships between artifacts.

use kontextual_model::{ArtifactRef, Change, Metadata, Relation, RelationId, RelationType};
use kontextual_store::{KnowledgeOp, Op, Page, PageRequest, RelationQuery};

use crate::{Caller, Error, Knowledge, Permission, Resource, Result};

impl Knowledge {
    pub fn relate(
        &self,
        caller: &Caller,
        source: &ArtifactRef,
        rel_type: &str,
        target: &ArtifactRef,
        properties: Option<Metadata>,
    ) -> Result<Relation> {
        let rel_type = RelationType::new(rel_type)?;
        let (s, t) = (self.key(source)?, self.key(target)?);
        // Writing a relation changes its source; its target must be readable.
        // An endpoint the caller may not read gets exactly the answer a
        // missing one gets (X2: no existence oracle); a missing endpoint of a
        // caller who may read everything is left to the store, which reports
        // the same dangling reference.
        for (role, r, permission) in [
            ("source", source, Permission::Write),
            ("target", target, Permission::Read),
        ] {
            match self.artifact_for(caller, r, permission) {
                Err(Error::NotFound(_)) if caller.scopes.is_some() => {
                    return Err(Error::Store(
                        kontextual_store::StoreError::DanglingReference {
                            what: format!("relation {role} {} does not exist", self.key(r)?),
                        },
                    ));
                }
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        let changes = self.write(
            caller,
            vec![Op::Knowledge(KnowledgeOp::CreateRelation {
                source: s,
                rel_type,
                target: t,
                properties: properties.unwrap_or_default(),
            })],
        )?;
        one_relation(changes)
    }

    pub fn relation_list(
        &self,
        caller: &Caller,
        artifact: Option<&ArtifactRef>,
        rel_type: Option<&str>,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<Relation>> {
        let artifact = match artifact {
            Some(r) => Some(self.artifact_show(caller, r)?.id),
            None => {
                self.authorize(
                    caller,
                    Permission::Read,
                    &Resource::Namespace("all relations (list one artifact's with --artifact)"),
                )?;
                None
            }
        };
        let q = RelationQuery {
            artifact,
            rel_type: rel_type.map(RelationType::new).transpose()?,
            include_deleted,
        };
        let mut page = self
            .store()
            .knowledge()
            .relations(&caller.namespace, &q, page)?;
        // only relations whose both ends the caller may read
        page.items
            .retain(|r| self.readable_id(caller, r.source) && self.readable_id(caller, r.target));
        Ok(page)
    }

    pub fn relation_update(
        &self,
        caller: &Caller,
        id: RelationId,
        rel_type: Option<&str>,
        properties: Option<Metadata>,
        expect: Option<u64>,
    ) -> Result<Relation> {
        let rel_type = rel_type.map(RelationType::new).transpose()?;
        self.relation_for_write(caller, id)?;
        let changes = self.write(
            caller,
            vec![Op::Knowledge(KnowledgeOp::UpdateRelation {
                id,
                rel_type,
                properties,
                expect,
            })],
        )?;
        one_relation(changes)
    }

    pub fn relation_delete(
        &self,
        caller: &Caller,
        id: RelationId,
        expect: Option<u64>,
    ) -> Result<Relation> {
        self.relation_for_write(caller, id)?;
        one_relation(self.write(
            caller,
            vec![Op::Knowledge(KnowledgeOp::DeleteRelation { id, expect })],
        )?)
    }

    /// A relation the caller may change: write on its source, and it must
    /// be able to see both ends (else the relation is "not found").
    fn relation_for_write(&self, caller: &Caller, id: RelationId) -> Result<Relation> {
        let r = self
            .store()
            .knowledge()
            .relation(&caller.namespace, id)?
            .ok_or_else(|| Error::NotFound(format!("relation {id}")))?;
        if !self.readable_id(caller, r.source) || !self.readable_id(caller, r.target) {
            return Err(Error::NotFound(format!("relation {id}")));
        }
        self.artifact_for(caller, &ArtifactRef::Id(r.source), Permission::Write)?;
        Ok(r)
    }

    /// Whether the caller may read the artifact with this id (silently).
    pub(crate) fn readable_id(&self, caller: &Caller, id: kontextual_model::ArtifactId) -> bool {
        if caller.scopes.is_none() {
            return true;
        }
        self.store()
            .knowledge()
            .artifact(&caller.namespace, &kontextual_store::ArtifactKey::Id(id))
            .ok()
            .flatten()
            .is_some_and(|a| self.readable(caller, &a))
    }
}

fn one_relation(changes: Vec<Change>) -> Result<Relation> {
    changes
        .into_iter()
        .find_map(|c| match c {
            Change::RelationCreated { relation }
            | Change::RelationUpdated { relation }
            | Change::RelationDeleted { relation, .. } => Some(relation),
            _ => None,
        })
        .ok_or_else(|| Error::InvalidInput("the store reported no relation change".to_owned()))
}
