-- A webhook's deliveries are listed by event (newest first), on the
-- unique (webhook_id, event_seq) key that already keeps one delivery per
-- (webhook, event): the dispatcher creates a webhook's deliveries in event
-- order, so the listing shows the same order as before, and a delivery's
-- insert no longer maintains a third index for the listing alone.
DROP INDEX webhook_deliveries_listing;
