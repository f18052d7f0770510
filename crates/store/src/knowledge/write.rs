//! Knowledge writes: each applies one operation inside the engine's
//! transaction and returns the changes it made (the caller appends their
//! audit records and events).

use kontextual_model::{Change, Collection, CollectionId, Timestamp};

use super::read;
use crate::port::WriteContext;
use crate::sql::{Tx, args};
use crate::{Result, StoreError};

pub(crate) fn create_collection(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    name: &str,
    description: &str,
    if_absent: bool,
    now: Timestamp,
) -> Result<Vec<Change>> {
    if read::collection_id(tx, &ctx.namespace, name)?.is_some() {
        if if_absent {
            return Ok(Vec::new());
        }
        return Err(StoreError::AlreadyExists {
            what: format!("collection {name}"),
        });
    }
    let c = Collection {
        id: CollectionId::new(),
        namespace: ctx.namespace.clone(),
        name: name.parse()?,
        description: description.to_owned(),
        created_at: now,
        artifact_count: 0,
    };
    tx.execute(
        "INSERT INTO collections (id, namespace, name, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![c.id.0, c.namespace.as_str(), c.name.as_str(), &c.description, now],
    )?;
    Ok(vec![Change::CollectionCreated { collection: c }])
}
