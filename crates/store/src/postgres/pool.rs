//! A bounded pool of PostgreSQL connections. Small on purpose: clients are
//! created on demand up to `max`, checked back in on drop unless the
//! connection broke, and a caller waits (bounded) for one to come back.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Result, StoreError};
use postgres::{Client, Config, NoTls};

use crate::postgres::conn::Conn;
use crate::postgres::{pg_err, tls::Tls};

pub struct Pool {
    config: Config,
    tls: Tls,
    lock_timeout: Duration,
    max: usize,
    timeout: Duration,
    state: Mutex<State>,
    returned: Condvar,
}

struct State {
    idle: Vec<Conn>,
    /// Connections handed out or idle.
    open: usize,
}

/// A connection checked out of the pool.
pub struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Conn>,
}

impl Pool {
    pub fn new(
        config: Config,
        max: usize,
        timeout: Duration,
        lock_timeout: Duration,
    ) -> Result<Pool> {
        let tls = Tls::for_config(&config)?;
        Ok(Pool {
            config,
            tls,
            lock_timeout,
            max: max.max(1),
            timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        })
    }

    fn connect(&self) -> Result<Client> {
        match &self.tls {
            Tls::None => self.config.connect(NoTls),
            Tls::Rustls(t) => self.config.connect(t.clone()),
        }
        .map_err(|e| match pg_err(e) {
            // whatever the server answers a new session with (a database
            // not accepting connections: 55000), the store cannot be used
            // now: unavailable (503, exit 5), not an internal error
            StoreError::Internal(reason) => StoreError::Unavailable {
                what: "the PostgreSQL database".into(),
                reason,
            },
            other => other,
        })
    }

    /// A connection outside the pool (a long-lived listener).
    pub fn connect_dedicated(&self) -> Result<Client> {
        self.connect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection: an idle one, a new one while under `max`, or the next
    /// one returned (waiting at most the checkout timeout).
    pub fn get(&self) -> Result<Pooled<'_>> {
        let deadline = Instant::now() + self.timeout;
        let mut st = self.lock();
        loop {
            while let Some(c) = st.idle.pop() {
                if c.reusable() {
                    return Ok(Pooled {
                        pool: self,
                        client: Some(c),
                    });
                }
                st.open -= 1;
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        client: Some(Conn::new(client)),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Locked {
                    waited_ms: self.timeout.as_millis() as u64,
                });
            }
            st = self
                .returned
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Drops clients on a thread of their own: closing a `postgres::Client`
/// runs its own small runtime, which panics inside an async context (a
/// server's runtime shutting down drops the store on one of its workers).
fn close(clients: Vec<Conn>) {
    if clients.is_empty() {
        return;
    }
    let _ = std::thread::spawn(move || drop(clients)).join();
}

impl Pool {
    /// Runs a read on a pooled connection; once more on a fresh one when
    /// the pooled one turns out to be gone (reads change nothing, so the
    /// retry is safe): a database restart costs no failed requests.
    pub(crate) fn read<T>(&self, mut f: impl FnMut(&mut Conn) -> Result<T>) -> Result<T> {
        let mut c = self.get()?;
        match f(&mut c) {
            Err(e) if c.lost() => {
                drop(c);
                tracing::debug!(error = %e, "a pooled connection was gone; reading again");
                self.discard_idle();
                let mut fresh = self.get()?;
                f(&mut fresh)
            }
            other => other,
        }
    }

    /// Closes every idle connection. Called when one turned out to be gone:
    /// the server most likely restarted, and the others are gone as well.
    pub(crate) fn discard_idle(&self) {
        let idle = {
            let mut st = self.lock();
            let idle = std::mem::take(&mut st.idle);
            st.open -= idle.len();
            idle
        };
        self.returned.notify_all();
        close(idle);
    }

    /// How long a write waits for the writer lock.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        close(idle);
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(c) = self.client.take() else { return };
        let mut st = self.pool.lock();
        let broken = if !c.reusable() {
            st.open -= 1;
            Some(c)
        } else {
            st.idle.push(c);
            None
        };
        drop(st);
        self.pool.returned.notify_one();
        close(broken.into_iter().collect());
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.client.as_ref().expect("a checked-out connection")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.client.as_mut().expect("a checked-out connection")
    }
}
