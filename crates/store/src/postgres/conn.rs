//! A pooled connection and the statements prepared on it.
//!
//! The `postgres` client prepares a statement given as text on every call:
//! one round trip to parse and describe it, another to run it. Nearly all
//! of the backend's SQL is fixed text, so each connection keeps what it
//! prepared, keyed by that text, and a repeated statement costs one round
//! trip. (Prepared statements live in the server session, so a pooler in
//! transaction mode in front of PostgreSQL is not supported; ADR 0007.)
//!
//! Transactions are begun and ended here too, by statement, so the code
//! that runs inside one takes the same `&mut Conn` as code that does not.

use std::collections::HashMap;

use crate::Result;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use crate::postgres::pg_err;

/// Statements kept per connection. Past this (only dynamic SQL could get
/// here) the cache starts over rather than grow without bound.
const MAX_STATEMENTS: usize = 512;

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub struct Conn {
    // declared first: dropped (closed on the server) while the client lives
    statements: HashMap<String, Statement>,
    client: Client,
    /// Set while a transaction is open; a connection handed back in that
    /// state (a panic inside one) is closed, not reused.
    in_transaction: bool,
    /// The server ended the session (a FATAL error such as "terminating
    /// connection due to administrator command"); the client may not have
    /// noticed the closed socket yet.
    ended: bool,
}

impl Conn {
    pub(crate) fn new(client: Client) -> Conn {
        Conn {
            statements: HashMap::new(),
            client,
            in_transaction: false,
            ended: false,
        }
    }

    /// Whether this connection may go back to the pool.
    pub(crate) fn reusable(&self) -> bool {
        !self.lost() && !self.in_transaction
    }

    /// Whether the server ended this session: a connection closed under
    /// us (the server restarted, or an administrator terminated it) is only
    /// noticed when it is next used.
    pub(crate) fn lost(&self) -> bool {
        self.ended || self.client.is_closed()
    }

    /// Notes whether an error ended the session, and hands it on.
    fn seen<T>(
        &mut self,
        r: std::result::Result<T, postgres::Error>,
    ) -> std::result::Result<T, postgres::Error> {
        if let Err(e) = &r
            && session_ended(e)
        {
            self.ended = true;
        }
        r
    }

    /// The client itself, for work that manages its own transactions
    /// (schema migration).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// How many statements this connection holds prepared.
    pub fn prepared_count(&self) -> usize {
        self.statements.len()
    }

    fn prepared(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        // statements of the shared SQL layer are written with `?N`
        let prepared = self.client.prepare(&crate::sql::to_postgres(sql));
        let s = self.seen(prepared)?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub fn query(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        let s = self.prepared(sql)?;
        let r = self.client.query(&s, params);
        self.seen(r)
    }

    pub fn query_one(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> std::result::Result<Row, postgres::Error> {
        let s = self.prepared(sql)?;
        let r = self.client.query_one(&s, params);
        self.seen(r)
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> std::result::Result<Option<Row>, postgres::Error> {
        let s = self.prepared(sql)?;
        let r = self.client.query_opt(&s, params);
        self.seen(r)
    }

    pub fn execute(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> std::result::Result<u64, postgres::Error> {
        let s = self.prepared(sql)?;
        let r = self.client.execute(&s, params);
        self.seen(r)
    }

    /// Statements without parameters, by the simple protocol (nothing kept).
    pub fn batch_execute(&mut self, sql: &str) -> std::result::Result<(), postgres::Error> {
        let r = self.client.batch_execute(sql);
        self.seen(r)
    }

    /// Runs `f` in a transaction begun with `begin` (`BEGIN`, or `BEGIN`
    /// with an isolation level): committed when `f` returns `Ok`, rolled
    /// back when it returns an error.
    pub fn transaction<T>(
        &mut self,
        begin: &str,
        f: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        self.begin(begin).map_err(pg_err)?;
        self.in_begun_transaction(f)
    }

    /// Begins a transaction (`BEGIN …`); nothing has happened in it yet, so
    /// a failure here may be retried on another connection.
    pub(crate) fn begin(&mut self, begin: &str) -> std::result::Result<(), postgres::Error> {
        self.batch_execute(begin)?;
        self.in_transaction = true;
        Ok(())
    }

    /// Runs `f` in the transaction [`Conn::begin`] opened, then commits it
    /// (or rolls it back when `f` fails).
    pub(crate) fn in_begun_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        match f(self) {
            Ok(v) => {
                self.batch_execute("COMMIT").map_err(pg_err)?;
                self.in_transaction = false;
                Ok(v)
            }
            Err(e) => {
                // a connection that cannot roll back is closed, not reused
                if self.batch_execute("ROLLBACK").is_ok() {
                    self.in_transaction = false;
                }
                Err(e)
            }
        }
    }

    /// Runs one statement inside the current transaction so that its
    /// failure (returned as the inner error) leaves the transaction usable.
    pub fn execute_in_savepoint(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<std::result::Result<u64, postgres::Error>> {
        self.batch_execute("SAVEPOINT kx_try").map_err(pg_err)?;
        let r = self.execute(sql, params);
        let end = if r.is_ok() {
            "RELEASE SAVEPOINT kx_try"
        } else {
            "ROLLBACK TO SAVEPOINT kx_try; RELEASE SAVEPOINT kx_try"
        };
        self.batch_execute(end).map_err(pg_err)?;
        Ok(r)
    }
}

/// Whether an error means the server ended this session: the socket is
/// closed, or the server sent a FATAL/PANIC error (an administrator's
/// `pg_terminate_backend`, a shutdown, a crash of another backend).
pub(crate) fn session_ended(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error()
            .is_some_and(|d| matches!(d.severity(), "FATAL" | "PANIC"))
}
