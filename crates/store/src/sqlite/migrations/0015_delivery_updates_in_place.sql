-- Retention finds finished deliveries by id (UUIDv7: every delivery
-- updated before T has an id below the first id of T), so the index on
-- (updated_at) that every recorded attempt had to maintain goes. It was
-- the only index over a column an attempt changes.
DROP INDEX webhook_deliveries_finished;
