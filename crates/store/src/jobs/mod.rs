//! The job queue's storage (O1, O2; ADR 0007) — written once, for both
//! engines. A claim is one `UPDATE … RETURNING` (on PostgreSQL it also
//! locks the rows it takes with `FOR UPDATE SKIP LOCKED`, so workers in
//! several processes never take the same job nor wait for each other); a
//! completion is one `UPDATE` fenced on (id, attempt, state), so a worker
//! whose lease was lost cannot overwrite the job's next attempt.

pub(crate) mod read;
pub(crate) mod write;
