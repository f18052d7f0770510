-- What a webhook's creator could read with (O5, X2): the scopes of the API
-- key that created it, as a JSON array; NULL when the local administrator
-- (the CLI on its own data directory) created it, who reads everything. The
-- dispatcher sends a webhook only events its creator may read, judged with
-- these scopes and the creator's grants and clearance when each event is
-- dispatched. Webhooks created before this migration have NULL.
ALTER TABLE webhooks ADD COLUMN creator_scopes TEXT;
