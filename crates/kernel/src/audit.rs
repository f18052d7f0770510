//! The audit chain's read side and the store's health (admin): listing and
//! verifying the chain, and the store's status.

use kontextual_model::audit::ChainReport;
use kontextual_model::{AuditRecord, ChainHead};
use kontextual_store::StoreStatus;

use crate::{Caller, Kernel, Permission, Resource, Result};

/// Result of `audit verify`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditVerification {
    #[serde(flatten)]
    pub report: ChainReport,
    /// Where the expected head came from (`given`, or the head file), if any.
    pub expected_head_source: Option<String>,
}

/// Filters for `audit list`.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Matches the target id or the target name.
    pub target: Option<String>,
    /// Only records at or after this instant.
    pub since: Option<kontextual_model::Timestamp>,
    /// Only records before this instant.
    pub until: Option<kontextual_model::Timestamp>,
    /// Only records of one request (its correlation id).
    pub correlation_id: Option<String>,
}

impl Kernel {
    /// Audit records after `after`, filtered; the chain is store-wide but a
    /// caller sees only its namespace.
    pub fn audit_list(
        &self,
        caller: &Caller,
        filter: &AuditFilter,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("audit log"))?;
        let q = kontextual_store::AuditQuery {
            namespace: Some(caller.namespace.clone()),
            actor: filter.actor.clone(),
            action: filter.action.clone(),
            target: filter.target.clone(),
            since: filter.since,
            until: filter.until,
            correlation_id: filter.correlation_id.clone(),
        };
        Ok(self.store.audit().query(&q, after, limit)?)
    }

    pub fn audit_verify(
        &self,
        caller: &Caller,
        expect: Option<ChainHead>,
    ) -> Result<AuditVerification> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("audit log"))?;
        let (report, expected_head_source) = self.store.audit().verify(expect)?;
        Ok(AuditVerification {
            report,
            expected_head_source,
        })
    }

    pub fn status(&self, caller: &Caller) -> Result<StoreStatus> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("store"))?;
        Ok(self.store.status()?)
    }
}
