//! Knowledge reads.

use kontextual_model::{CollectionId, Namespace};

use crate::Result;
use crate::sql::{Tx, args};

pub(crate) fn collection_id(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    name: &str,
) -> Result<Option<CollectionId>> {
    tx.query_opt(
        "SELECT id FROM collections WHERE namespace = ?1 AND name = ?2",
        args![ns.as_str(), name],
        |r| Ok(CollectionId(r.get(0)?)),
    )
}
