-- Recording an attempt touches less.
--
-- 1. Retention finds finished deliveries by id (UUIDv7: every delivery
--    updated before T has an id below the first id of T), so the index on
--    (updated_at) that every recorded attempt had to maintain goes. It was
--    the only index over a column an attempt changes.
-- 2. The latest attempt lives in its delivery's row (`last_*`), and
--    `webhook_attempts` keeps the earlier ones: a delivery that succeeds
--    at its first try, nearly all of them, writes no attempt row. The
--    next attempt moves the latest into `webhook_attempts` first.
DROP INDEX webhook_deliveries_finished;
ALTER TABLE webhook_deliveries ADD COLUMN last_attempt_at INTEGER;
ALTER TABLE webhook_deliveries ADD COLUMN last_response TEXT;
UPDATE webhook_deliveries SET
    last_attempt_at = (SELECT a.at FROM webhook_attempts a
        WHERE a.delivery_id = webhook_deliveries.id AND a.attempt = webhook_deliveries.attempts),
    last_response = (SELECT a.response FROM webhook_attempts a
        WHERE a.delivery_id = webhook_deliveries.id AND a.attempt = webhook_deliveries.attempts)
    WHERE attempts > 0;
DELETE FROM webhook_attempts WHERE attempt =
    (SELECT d.attempts FROM webhook_deliveries d WHERE d.id = webhook_attempts.delivery_id);
