//! API keys and authentication (X1). A token is `kx_<id>_<secret>`: the id
//! finds the key, the secret (256 random bits) is compared by its SHA-256 in
//! constant time. Last use is coalesced in memory and written at most about
//! once a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kontextual_model::key::{TOKEN_PREFIX, digests_match, parse_token};
use kontextual_model::{Actor, ApiKey, Digest, Scope, Timestamp};
use kontextual_store::{AccessOp, Op, Page, PageRequest};

use crate::{Caller, Error, Kernel, Permission, Resource, Result};

/// How often coalesced last-use times are written.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How long a verified key (with its grants and clearance) is trusted
/// without asking the store again: revocations, new grants and clearances
/// take effect within this time.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);

/// Verified tokens (by the SHA-256 of the whole token) and when.
#[derive(Default)]
pub(crate) struct AuthCache {
    entries: HashMap<Digest, (Caller, Instant)>,
}

pub(crate) type AuthCacheState = Mutex<AuthCache>;

/// Pending last-use times and when they were last written.
pub(crate) struct Touches {
    pending: HashMap<String, Timestamp>,
    flushed: Instant,
}

impl Default for Touches {
    fn default() -> Self {
        Touches {
            pending: HashMap::new(),
            flushed: Instant::now(),
        }
    }
}

/// A new key and its token (shown once; only its hash is stored).
#[derive(Debug, serde::Serialize)]
pub struct NewKey {
    pub key: ApiKey,
    pub token: String,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::internal(format!("no randomness available: {e}")))?;
    Ok(hex::encode(buf))
}

impl Kernel {
    pub fn key_create(
        &self,
        caller: &Caller,
        name: &str,
        actor: Actor,
        scopes: Vec<Scope>,
        expires_at: Option<Timestamp>,
    ) -> Result<NewKey> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("API keys"))?;
        let name = name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(Error::InvalidInput(
                "a key name must be 1-128 printable characters".to_owned(),
            ));
        }
        if scopes.is_empty() {
            return Err(Error::InvalidInput(
                "give the key at least one scope: read, write, admin or export".to_owned(),
            ));
        }
        if expires_at.is_some_and(|e| e <= kontextual_model::now()) {
            return Err(Error::InvalidInput("the expiry is in the past".to_owned()));
        }
        let mut scopes = scopes;
        scopes.sort();
        scopes.dedup();
        let id = random_hex(8)?;
        let secret = random_hex(32)?;
        let key = ApiKey {
            id: id.clone(),
            name: name.to_owned(),
            namespace: caller.namespace.clone(),
            actor,
            scopes,
            created_at: kontextual_model::now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
            secret_hash: Some(Digest::of(secret.as_bytes())),
        };
        let key = self.write_one(caller, Op::Access(AccessOp::CreateKey(key)), |c| match c {
            kontextual_model::Change::KeyCreated { key, .. } => Some(key),
            _ => None,
        })?;
        Ok(NewKey {
            key,
            token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        })
    }

    pub fn key_list(&self, caller: &Caller, page: &PageRequest) -> Result<Page<ApiKey>> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("API keys"))?;
        Ok(self.store().access().keys(&caller.namespace, page)?)
    }

    /// Forgets verified keys: access changed (in this process at once; in
    /// others within [`AUTH_CACHE_TTL`]).
    pub(crate) fn forget_verified_keys(&self) {
        self.auth_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .clear();
    }

    /// Revokes a key; revoking it again is a no-op.
    pub fn key_revoke(&self, caller: &Caller, id: &str) -> Result<ApiKey> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("API keys"))?;
        self.write(
            caller,
            vec![Op::Access(AccessOp::RevokeKey { id: id.to_owned() })],
        )?;
        self.forget_verified_keys();
        let mut k = self
            .store()
            .access()
            .key(id)?
            .filter(|k| k.namespace == caller.namespace)
            .ok_or_else(|| Error::NotFound(format!("API key {id}")))?;
        k.secret_hash = None;
        Ok(k)
    }

    /// Whether requests must carry a key (any unrevoked key exists).
    pub fn keys_exist(&self) -> Result<bool> {
        Ok(self.store().access().has_keys()?)
    }

    /// The caller of a token verified less than [`AUTH_CACHE_TTL`] ago, if
    /// any: no store access, so a server can answer without blocking.
    /// Never blocks: no store access (key uses are only noted; the server's
    /// follower thread or the next uncached check writes them), so an async
    /// handler may call it directly and hop to the blocking pool only on a miss.
    pub fn authenticate_cached(
        &self,
        token: &str,
        correlation_id: kontextual_model::CorrelationId,
    ) -> Option<Caller> {
        let h = Digest::of(token.as_bytes());
        let cache = self.auth_cache.lock().unwrap_or_else(|p| p.into_inner());
        let (caller, at) = cache.entries.get(&h)?;
        if at.elapsed() >= AUTH_CACHE_TTL {
            return None;
        }
        let mut c = caller.clone();
        c.correlation_id = correlation_id;
        drop(cache);
        if let Some(id) = &c.key_id {
            self.touch(id, kontextual_model::now(), false);
        }
        Some(c)
    }

    /// The caller a token stands for. Unknown ids and wrong secrets get the
    /// same answer; a revoked or expired key says so only to a holder of
    /// its real secret.
    pub fn authenticate(&self, token: &str) -> Result<Caller> {
        if let Some(c) = self.authenticate_cached(token, kontextual_model::CorrelationId::new()) {
            return Ok(c);
        }
        let c = self.authenticate_uncached(token)?;
        let mut cache = self.auth_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.entries.len() > 10_000 {
            cache
                .entries
                .retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
        }
        cache
            .entries
            .insert(Digest::of(token.as_bytes()), (c.clone(), Instant::now()));
        Ok(c)
    }

    fn authenticate_uncached(&self, token: &str) -> Result<Caller> {
        let refused = || Error::Unauthenticated("the API key is not valid".to_owned());
        let (id, secret) = parse_token(token).ok_or_else(refused)?;
        let key = self.store().access().key(id)?.ok_or_else(refused)?;
        let hash = key.secret_hash.ok_or_else(refused)?;
        if !digests_match(&hash, &Digest::of(secret.as_bytes())) {
            return Err(refused());
        }
        let now = kontextual_model::now();
        if key.revoked_at.is_some() {
            return Err(Error::Unauthenticated(format!("API key {id} was revoked")));
        }
        if key.expires_at.is_some_and(|e| now >= e) {
            return Err(Error::Unauthenticated(format!("API key {id} has expired")));
        }
        self.touch(id, now, true);
        let mut caller = self.caller_as(key.actor, key.namespace, key.scopes)?;
        caller.key_id = Some(key.id);
        Ok(caller)
    }

    /// `caller` as its key, grants and clearance stand now. A long-lived
    /// request (an event stream) checks its caller again with this, so a
    /// revoked or expired key ends it and a revoked grant or a lowered
    /// clearance narrows it, as they do new requests. A caller without a
    /// key (the local administrator, a server without keys) stays as it is.
    pub fn recheck(&self, caller: &Caller) -> Result<Caller> {
        let Some(id) = &caller.key_id else {
            return Ok(caller.clone());
        };
        let revoked = || Error::Unauthenticated(format!("API key {id} was revoked"));
        let key = self.store().access().key(id)?.ok_or_else(revoked)?;
        if key.revoked_at.is_some() || key.secret_hash.is_none() {
            return Err(revoked());
        }
        if key.expires_at.is_some_and(|e| kontextual_model::now() >= e) {
            return Err(Error::Unauthenticated(format!("API key {id} has expired")));
        }
        let mut now = self.caller_as(key.actor, key.namespace, key.scopes)?;
        now.key_id = Some(key.id);
        now.correlation_id = caller.correlation_id.clone();
        Ok(now)
    }

    /// The caller `actor` is with a key of `scopes` in `namespace`: its
    /// grants and clearance as the store holds them now. For whoever acts
    /// for an actor later (a webhook delivers what its creator may read).
    pub fn caller_as(
        &self,
        actor: kontextual_model::Actor,
        namespace: kontextual_model::Namespace,
        scopes: Vec<kontextual_model::Scope>,
    ) -> Result<Caller> {
        let grants = self.store().access().grants(&namespace, Some(&actor))?;
        let clearance = self
            .store()
            .access()
            .clearances(&namespace, Some(&actor))?
            .pop()
            .map_or(kontextual_model::Classification::Internal, |c| c.level);
        let mut caller = Caller::new(actor, namespace);
        caller.scopes = Some(scopes);
        caller.grants = Some(std::sync::Arc::new(grants));
        caller.clearance = Some(clearance);
        Ok(caller)
    }

    fn touch(&self, id: &str, at: Timestamp, may_flush: bool) {
        let due = {
            let mut t = self.touches.lock().unwrap_or_else(|p| p.into_inner());
            t.pending.insert(id.to_owned(), at);
            if may_flush && t.flushed.elapsed() >= TOUCH_EVERY {
                t.flushed = Instant::now();
                Some(t.pending.drain().collect::<Vec<_>>())
            } else {
                None
            }
        };
        if let Some(uses) = due {
            self.flush_touches(uses);
        }
    }

    /// Writes pending last-use times now (on shutdown).
    pub fn flush_key_uses(&self) {
        let uses: Vec<_> = {
            let mut t = self.touches.lock().unwrap_or_else(|p| p.into_inner());
            t.flushed = Instant::now();
            t.pending.drain().collect()
        };
        if !uses.is_empty() {
            self.flush_touches(uses);
        }
    }

    fn flush_touches(&self, uses: Vec<(String, Timestamp)>) {
        if let Err(e) = self.write(
            &system_caller(),
            vec![Op::Access(AccessOp::TouchKeys { uses })],
        ) && !crate::store_unavailable(&e, "recording API key use")
        {
            tracing::warn!(error = %e, "could not record API key use");
        }
    }
}

pub(crate) type TouchState = Mutex<Touches>;

/// How long an idempotency key's answer is kept.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

impl Kernel {
    /// Reserves `key` for a request (by `request_hash`) in `scope` (the
    /// caller). Bookkeeping for the HTTP layer; never audited.
    pub fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: Digest,
    ) -> Result<kontextual_model::Idempotency> {
        let expire_before = kontextual_model::now()
            .checked_sub(jiff::SignedDuration::try_from(IDEMPOTENCY_TTL).unwrap_or_default())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        self.write_one(
            &system_caller(),
            Op::Access(AccessOp::BeginIdempotent {
                scope: scope.to_owned(),
                key: key.to_owned(),
                request_hash,
                expire_before,
            }),
            |c| match c {
                kontextual_model::Change::Idempotency(state) => Some(state),
                _ => None,
            },
        )
    }

    /// Stores the answer for a reserved key.
    pub fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<()> {
        self.write(
            &system_caller(),
            vec![Op::Access(AccessOp::FinishIdempotent {
                scope: scope.to_owned(),
                key: key.to_owned(),
                status,
                content_type: content_type.to_owned(),
                body,
            })],
        )?;
        Ok(())
    }

    /// Releases a reservation whose request failed on the server's side.
    pub fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()> {
        self.write(
            &system_caller(),
            vec![Op::Access(AccessOp::AbandonIdempotent {
                scope: scope.to_owned(),
                key: key.to_owned(),
            })],
        )?;
        Ok(())
    }
}

fn system_caller() -> Caller {
    Caller::new(Actor::local_admin(), kontextual_model::Namespace::default())
}
