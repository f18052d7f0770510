//! Typed relationships between artifacts.

use kontextual_model::{ArtifactRef, Change, Metadata, Relation, RelationId, RelationType};
use kontextual_store::{Op, Page, PageRequest, RelationQuery};

use crate::{Caller, Error, Permission, Result, Services};

impl Services {
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
        self.authorize(
            caller,
            Permission::Write,
            &format!("{source} {rel_type} {target}"),
        )?;
        let changes = self.write(
            caller,
            vec![Op::CreateRelation {
                source: s,
                rel_type,
                target: t,
                properties: properties.unwrap_or_default(),
            }],
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
            None => None,
        };
        self.authorize(caller, Permission::Read, "relations")?;
        let q = RelationQuery {
            artifact,
            rel_type: rel_type.map(RelationType::new).transpose()?,
            include_deleted,
        };
        Ok(self.store().relations(&caller.namespace, &q, page)?)
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
        self.authorize(caller, Permission::Write, &format!("relation {id}"))?;
        let changes = self.write(
            caller,
            vec![Op::UpdateRelation {
                id,
                rel_type,
                properties,
                expect,
            }],
        )?;
        one_relation(changes)
    }

    pub fn relation_delete(
        &self,
        caller: &Caller,
        id: RelationId,
        expect: Option<u64>,
    ) -> Result<Relation> {
        self.authorize(caller, Permission::Write, &format!("relation {id}"))?;
        one_relation(self.write(caller, vec![Op::DeleteRelation { id, expect }])?)
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
