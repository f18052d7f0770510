//! Access-domain storage shared by the engines. (For now only what the
//! knowledge writes need: the legal-hold check.)

use kontextual_model::Artifact;

use crate::port::WriteContext;
use crate::sql::{Tx, args};
use crate::{Result, StoreError};

/// `Held` if a legal hold keeps `a` from being deleted or purged.
pub(crate) fn refuse_if_held(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    a: &Artifact,
    what: &str,
) -> Result<()> {
    let held = tx.query_opt(
        "SELECT reason FROM holds WHERE artifact_id = ?1 AND namespace = ?2",
        args![a.id.0, ctx.namespace.as_str()],
        |r| r.get::<String>(0),
    )?;
    match held {
        Some(reason) => Err(StoreError::Held {
            what: what.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
