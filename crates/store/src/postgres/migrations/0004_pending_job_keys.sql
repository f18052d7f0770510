-- A lookup of the pending job holding a unique key, by that key.
--
-- Enqueueing a job with a unique key first looks for a queued or retrying
-- (failed) job with the same key in the namespace. `jobs_unique` covers
-- only queued jobs, so that lookup could not use it, and its plan walked
-- `jobs_listing` (namespace, id): every job of the namespace, finished or
-- not, on each such enqueue. This index holds only pending jobs with a
-- key, in id order, so the lookup (`ORDER BY id LIMIT 1`) reads one entry.
CREATE INDEX jobs_pending_key ON jobs (namespace, unique_key, id)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'failed');
