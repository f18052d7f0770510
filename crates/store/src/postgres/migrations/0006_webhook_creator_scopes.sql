-- The SQLite migration 0016_webhook_creator_scopes.sql: the scopes of the
-- API key that created a webhook (JSON), NULL for the local administrator.
ALTER TABLE webhooks ADD COLUMN creator_scopes TEXT;
