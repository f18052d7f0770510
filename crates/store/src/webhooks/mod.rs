//! Webhook storage (O5) — written once, for both engines: subscriptions
//! with their secrets, deliveries (one per webhook and outbox event, with
//! the exact body every attempt sends) and their attempts. Creating a
//! delivery enqueues its delivery job in the same transaction; the HTTP
//! side (signing, address checks, the client) lives outside the store.

pub(crate) mod read;
pub(crate) mod write;
