//! The SQLite backend: one database file in the data directory, WAL mode.
//!
//! Writes go through one writer thread that group-commits: it drains every
//! batch queued while the previous commit was syncing and applies them in one
//! `BEGIN IMMEDIATE` transaction, each batch inside its own savepoint (a
//! failing batch rolls back alone). So throughput is not capped by fsync.
//! Reads use a small pool of reader connections (WAL readers never block the
//! writer). Several processes may share one data directory: SQLite's write
//! lock serializes their transactions and the audit head is re-read inside
//! each one, so the chain stays single.

mod blobs;
mod check;
pub(crate) mod read;
pub mod schema;
mod write;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use kontextual_model::{ChainHead, Change};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::port::WriteBatch;
use crate::sql::Tx;
use crate::{Result, StoreError};

pub use schema::latest_version;

/// File names inside a data directory.
pub const DB_FILE: &str = "kontextual.db";
/// The last audit chain head, kept outside the database to detect truncation.
pub const HEAD_FILE: &str = crate::head_copy::FILE;
/// Most batches one group commit takes.
const MAX_GROUP: usize = 512;

/// How to open a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the store if missing and apply all migrations (`init`).
    Create,
    /// Open an existing, up-to-date store; pending migrations are an error.
    ReadWrite,
    /// Open an existing store whatever its schema (`db status`, `verify`).
    Inspect,
    /// Open an existing store and apply pending migrations (`db migrate`).
    Migrate,
}

#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub mode: OpenMode,
    /// How long a write waits for another process's write lock.
    pub busy_timeout: Duration,
    /// Stop migrating at this version (tests of upgrade paths).
    #[doc(hidden)]
    pub schema_target: Option<u32>,
}

impl OpenOptions {
    pub fn new(mode: OpenMode) -> Self {
        OpenOptions {
            mode,
            busy_timeout: Duration::from_secs(5),
            schema_target: None,
        }
    }
}

pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    match &e {
        // Constraint violations by extended code, so shared code sees the
        // same kinds as on PostgreSQL (never by matching message text).
        rusqlite::Error::SqliteFailure(f, msg)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::AlreadyExists {
                what: msg.clone().unwrap_or_else(|| "a unique key".to_owned()),
            }
        }
        rusqlite::Error::SqliteFailure(f, msg)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::DanglingReference {
                what: msg.clone().unwrap_or_default(),
            }
        }
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Locked { waited_ms: 0 }
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupted(e.to_string())
            }
            ErrorCode::DiskFull => StoreError::io(
                "writing the store",
                std::io::Error::new(std::io::ErrorKind::StorageFull, "the disk is full"),
            ),
            ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => {
                StoreError::io("accessing the store", std::io::Error::other(e.to_string()))
            }
            _ => StoreError::Internal(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(col, _, inner) => {
            StoreError::Corrupted(format!("unreadable value in column {col}: {inner}"))
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

enum Location {
    File {
        dir: PathBuf,
        db: PathBuf,
        /// Opened read-only (`verify` on a full disk): readers open this
        /// URI read-only instead of `db` read-write.
        read_only: Option<PathBuf>,
    },
    Memory,
}

struct Inner {
    location: Location,
    busy_timeout: Duration,
    /// Memory stores have one connection, shared by the writer and readers.
    shared: Option<Arc<Mutex<Connection>>>,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<Sender<WriteJob>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
}

struct WriteJob {
    batch: WriteBatch,
    reply: SyncSender<Result<Vec<Change>>>,
}

/// A Kontextual store in SQLite (a file in a data directory, or in memory).
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection cannot leave SQLite inconsistent
    // (its own transaction handling covers that), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// SQLite reports a failed write while opening (creating the WAL index),
/// and some failed writes in the middle of a transaction (growing the WAL
/// or the shared-memory index), as a bare "disk I/O error". When that is a
/// full disk, say so: a small probe write next to the database tells.
fn explain_io(dir: &Path, e: StoreError) -> StoreError {
    explain_io_while(dir, e, "opening the store for writing")
}

fn explain_io_while(dir: &Path, e: StoreError, doing: &'static str) -> StoreError {
    if e.kind() != crate::ErrorKind::Io {
        return e;
    }
    let probe = tempfile::tempfile_in(dir).and_then(|mut f| {
        std::io::Write::write_all(&mut f, &[0u8; 64 * 1024])?;
        f.sync_all()
    });
    match probe {
        Err(p) if p.kind() == std::io::ErrorKind::StorageFull => StoreError::io(
            doing,
            std::io::Error::new(std::io::ErrorKind::StorageFull, "the disk is full"),
        ),
        _ => e,
    }
}

/// How a store opened for inspection on a full disk is read.
const READ_ONLY: OpenFlags = OpenFlags::SQLITE_OPEN_READ_ONLY
    .union(OpenFlags::SQLITE_OPEN_NO_MUTEX)
    .union(OpenFlags::SQLITE_OPEN_URI);

/// `file_writer`: the write connection of a file store (WAL switch, big cache).
fn configure(conn: &Connection, busy: Duration, file_writer: bool) -> Result<()> {
    conn.busy_timeout(busy).map_err(sql_err)?;
    // Every statement of the write path stays prepared (the default of 16 thrashes).
    conn.set_prepared_statement_cache_capacity(128);
    if file_writer {
        // Switching a file to WAL needs an exclusive lock, and SQLite
        // answers "busy" at once (without the busy handler) while a
        // concurrent opener holds the file: retry within the busy timeout.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
                Ok(m) => break m,
                Err(e) => match sql_err(e) {
                    StoreError::Locked { .. } if started.elapsed() < busy => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    StoreError::Locked { .. } => {
                        return Err(StoreError::Locked {
                            waited_ms: started.elapsed().as_millis() as u64,
                        });
                    }
                    other => return Err(other),
                },
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Internal(format!(
                "could not enable WAL (journal mode {mode})"
            )));
        }
    }
    // FULL: a committed write survives power loss, not just a crash; group
    // commit amortizes the extra fsync.
    conn.execute_batch("PRAGMA temp_store = MEMORY;")
        .map_err(sql_err)?;
    if file_writer {
        // The writer: a write group touches many pages; keep them in memory
        // (64 MiB) rather than spilling to the WAL mid-transaction, and
        // checkpoint every 64 MiB of WAL rather than every 4.
        conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;")
            .map_err(sql_err)?;
    }
    // secure_delete: purged content is overwritten, not left in free pages.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )
    .map_err(sql_err)?;
    Ok(())
}

impl SqliteBackend {
    /// Opens (or with [`OpenMode::Create`] creates) the store in `dir`.
    pub fn open_dir(dir: &Path, opts: &OpenOptions) -> Result<Self> {
        let db = dir.join(DB_FILE);
        if !db.exists() {
            if opts.mode != OpenMode::Create {
                if dir.is_dir()
                    && fs::read_dir(dir)
                        .map(|mut d| d.next().is_some())
                        .unwrap_or(false)
                {
                    return Err(StoreError::NotAStore {
                        path: dir.to_owned(),
                        reason: format!(
                            "the directory holds no {DB_FILE}; run `kontextual init` to create a store"
                        ),
                    });
                }
                return Err(StoreError::NotInitialized {
                    path: dir.to_owned(),
                });
            }
            if dir.exists() && !dir.is_dir() {
                return Err(StoreError::NotAStore {
                    path: dir.to_owned(),
                    reason: "it is a file, not a directory".to_owned(),
                });
            }
            let foreign = fs::read_dir(dir)
                .map(|d| {
                    // our own files may appear while a concurrent `init` runs
                    let ours = [
                        "kontextual.toml",
                        DB_FILE,
                        "kontextual.db-wal",
                        "kontextual.db-shm",
                        "kontextual.db-journal",
                        HEAD_FILE,
                    ];
                    d.filter_map(|e| e.ok())
                        .any(|e| !ours.iter().any(|o| e.file_name() == *o))
                })
                .unwrap_or(false);
            if foreign {
                return Err(StoreError::NotAStore {
                    path: dir.to_owned(),
                    reason: "the directory is not empty; choose an empty or new directory for a new store".to_owned(),
                });
            }
            fs::create_dir_all(dir)
                .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let open = || Connection::open_with_flags(&db, flags).map_err(sql_err);
        let mut conn = match open() {
            Ok(c) => c,
            Err(e) if opts.mode == OpenMode::Inspect && e.kind() == crate::ErrorKind::Io => {
                return Self::open_read_only(dir, &db, opts, e);
            }
            Err(e) => return Err(explain_io(dir, e)),
        };
        // Before the first read: a concurrent `init` may hold the lock while
        // it switches the file to WAL, and without a busy timeout the
        // identity check would fail at once instead of waiting.
        conn.busy_timeout(opts.busy_timeout).map_err(sql_err)?;
        let ready = Self::check_identity(&conn, dir)
            .and_then(|()| configure(&conn, opts.busy_timeout, true));
        match ready {
            Ok(()) => {}
            // A full disk (or a read-only medium) cannot create the WAL
            // index the read-write open needs: inspection (`verify`,
            // `audit verify`, `db status`) goes on read-only.
            Err(e) if opts.mode == OpenMode::Inspect && e.kind() == crate::ErrorKind::Io => {
                drop(conn);
                return Self::open_read_only(dir, &db, opts, e);
            }
            Err(e) => return Err(explain_io(dir, e)),
        }
        Self::prepare_schema(&mut conn, opts, dir)?;
        let backend = SqliteBackend::start(
            Location::File {
                dir: dir.to_owned(),
                db: db.clone(),
                read_only: None,
            },
            opts.busy_timeout,
            conn,
        );
        Ok(backend)
    }

    /// Opens the store without writing anything, for inspection when the
    /// read-write open failed with `cause` (a full disk). With an empty or
    /// absent WAL the file is the whole store and is opened immutable (no
    /// WAL index, no locks); otherwise plainly read-only.
    fn open_read_only(
        dir: &Path,
        db: &Path,
        opts: &OpenOptions,
        cause: StoreError,
    ) -> Result<Self> {
        let wal = dir.join("kontextual.db-wal");
        let wal_empty = fs::metadata(&wal).ok().is_none_or(|m| m.len() == 0);
        let mut uri = String::from("file:");
        // percent-escape what a URI path cannot hold as is
        for b in db.to_string_lossy().bytes() {
            match b {
                b'%' | b'?' | b'#' => uri.push_str(&format!("%{b:02X}")),
                _ => uri.push(char::from(b)),
            }
        }
        uri.push_str(if wal_empty {
            "?immutable=1"
        } else {
            "?mode=ro"
        });
        let uri = PathBuf::from(uri);
        let conn =
            Connection::open_with_flags(&uri, READ_ONLY).map_err(|_| explain_io(dir, cause))?;
        conn.busy_timeout(opts.busy_timeout).map_err(sql_err)?;
        Self::check_identity(&conn, dir)?;
        let mut conn = conn;
        Self::prepare_schema(&mut conn, opts, dir)?;
        tracing::warn!(
            path = %db.display(),
            "opened the store read-only: it cannot be opened for writing (is the disk full?)"
        );
        Ok(SqliteBackend::start(
            Location::File {
                dir: dir.to_owned(),
                db: db.to_owned(),
                read_only: Some(uri),
            },
            opts.busy_timeout,
            conn,
        ))
    }

    /// A fresh, private in-memory store (tests, dry runs). Lost on drop.
    pub fn memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory().map_err(sql_err)?;
        configure(&conn, Duration::from_secs(5), false)?;
        Self::prepare_schema(
            &mut conn,
            &OpenOptions::new(OpenMode::Create),
            Path::new(":memory:"),
        )?;
        Ok(SqliteBackend::start_shared(Arc::new(Mutex::new(conn))))
    }

    fn check_identity(conn: &Connection, dir: &Path) -> Result<()> {
        let not_a_store = |reason: String| StoreError::NotAStore {
            path: dir.to_owned(),
            reason,
        };
        // Both facts from one snapshot: a concurrent `init` commits them together.
        let read_both = || -> rusqlite::Result<(i32, i64)> {
            conn.execute_batch("BEGIN")?;
            let out = conn
                .query_row("PRAGMA application_id", [], |r| r.get(0))
                .and_then(|app: i32| {
                    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                        .map(|n: i64| (app, n))
                });
            let _ = conn.execute_batch("COMMIT");
            out
        };
        // Only a file SQLite does not recognise is "not a store": a read
        // that fails (a full disk cannot create the WAL index, say) is that
        // failure, with its own kind and exit code.
        let (app_id, tables) = read_both().map_err(|e| match &e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::NotADatabase => {
                not_a_store(format!("{DB_FILE} is not a SQLite database ({e})"))
            }
            rusqlite::Error::SqliteFailure(..) => sql_err(e),
            _ => not_a_store(format!("{DB_FILE} is not a SQLite database ({e})")),
        })?;
        if app_id == schema::APPLICATION_ID {
            return Ok(());
        }
        if app_id == 0 && tables == 0 {
            return Ok(()); // empty file: a store being created
        }
        Err(not_a_store(format!(
            "{DB_FILE} is a SQLite database of another application (application_id {app_id:#x})"
        )))
    }

    fn prepare_schema(conn: &mut Connection, opts: &OpenOptions, dir: &Path) -> Result<()> {
        let state = schema::inspect(conn)?;
        let fresh = state.current == 0;
        match opts.mode {
            OpenMode::Create => {
                schema::migrate(conn, opts.schema_target, true)?;
            }
            OpenMode::Migrate if fresh => {
                return Err(StoreError::NotInitialized {
                    path: dir.to_owned(),
                });
            }
            OpenMode::Migrate => {
                schema::migrate(conn, opts.schema_target, false)?;
            }
            // An empty database file: `init` was interrupted before its first commit.
            OpenMode::ReadWrite | OpenMode::Inspect if fresh => {
                return Err(StoreError::NotInitialized {
                    path: dir.to_owned(),
                });
            }
            OpenMode::ReadWrite => {
                if !state.pending.is_empty() {
                    return Err(StoreError::MigrationsPending {
                        current: state.current,
                        latest: latest_version(),
                    });
                }
            }
            OpenMode::Inspect => {}
        }
        Ok(())
    }

    fn start(location: Location, busy: Duration, writer: Connection) -> Self {
        let (tx, rx) = mpsc::channel();
        let head_file = match &location {
            Location::File { dir, .. } => Some(dir.join(HEAD_FILE)),
            Location::Memory => None,
        };
        let writer = WriterConn::Own(writer);
        let handle = std::thread::Builder::new()
            .name("kontextual-sqlite-writer".to_owned())
            .spawn(move || writer_loop(writer, rx, head_file, busy.as_millis() as u64))
            .ok();
        SqliteBackend {
            inner: Arc::new(Inner {
                location,
                busy_timeout: busy,
                shared: None,
                readers: Mutex::new(Vec::new()),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(handle),
            }),
        }
    }

    fn start_shared(shared: Arc<Mutex<Connection>>) -> Self {
        let (tx, rx) = mpsc::channel();
        let writer = WriterConn::Shared(shared.clone());
        let handle = std::thread::Builder::new()
            .name("kontextual-sqlite-writer".to_owned())
            .spawn(move || writer_loop(writer, rx, None, 5000))
            .ok();
        SqliteBackend {
            inner: Arc::new(Inner {
                location: Location::Memory,
                busy_timeout: Duration::from_secs(5),
                shared: Some(shared),
                readers: Mutex::new(Vec::new()),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(handle),
            }),
        }
    }

    /// Runs `f` on a reader connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if let Some(shared) = &self.inner.shared {
            return f(&lock(shared));
        }
        let Location::File { db, read_only, .. } = &self.inner.location else {
            return Err(StoreError::Internal(
                "memory store without connection".to_owned(),
            ));
        };
        let pooled = lock(&self.inner.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = match read_only {
                    Some(uri) => Connection::open_with_flags(uri, READ_ONLY),
                    None => Connection::open_with_flags(
                        db,
                        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    ),
                }
                .map_err(sql_err)?;
                configure(&c, self.inner.busy_timeout, false)?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = lock(&self.inner.readers);
        if pool.len() < 32 {
            pool.push(conn);
        }
        out
    }

    pub(crate) fn submit(&self, mut batch: WriteBatch) -> Result<Vec<Change>> {
        // Read streamed content here, in the caller's thread and outside any
        // transaction: a slow or stalled source must never hold the write
        // lock that every other writer (and process) waits for.
        for op in &mut batch.ops {
            if let crate::Op::Knowledge(crate::KnowledgeOp::PutArtifact(put)) = op
                && let crate::Content::Reader(_) = &put.content
            {
                let crate::Content::Reader(r) =
                    std::mem::replace(&mut put.content, crate::Content::Keep)
                else {
                    unreachable!("checked above")
                };
                put.content = crate::blobs::stage(r, self.spool_dir().as_deref())?;
            }
        }
        let (reply, rx) = mpsc::sync_channel(1);
        {
            let guard = lock(&self.inner.writer);
            let tx = guard
                .as_ref()
                .ok_or_else(|| StoreError::Internal("the store is closed".to_owned()))?;
            tx.send(WriteJob { batch, reply })
                .map_err(|_| StoreError::Internal("the store writer has stopped".to_owned()))?;
        }
        let result = rx.recv().map_err(|_| {
            StoreError::Internal("the store writer stopped before answering".to_owned())
        })?;
        match (result, self.spool_dir()) {
            (Err(e), Some(dir)) => Err(explain_io_while(&dir, e, "writing the store")),
            (result, _) => result,
        }
    }

    /// Where large content is staged before its write transaction.
    fn spool_dir(&self) -> Option<PathBuf> {
        match &self.inner.location {
            Location::File { dir, .. } => Some(dir.clone()),
            Location::Memory => None,
        }
    }

    pub(crate) fn head_file(&self) -> Option<PathBuf> {
        match &self.inner.location {
            Location::File { dir, .. } => Some(dir.join(HEAD_FILE)),
            Location::Memory => None,
        }
    }

    pub(crate) fn db_path(&self) -> Option<&Path> {
        match &self.inner.location {
            Location::File { db, .. } => Some(db),
            Location::Memory => None,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        lock(&self.writer).take();
        if let Some(h) = lock(&self.writer_thread).take() {
            let _ = h.join();
        }
    }
}

enum WriterConn {
    Own(Connection),
    Shared(Arc<Mutex<Connection>>),
}

/// The writer gives its page cache back (`PRAGMA shrink_memory`) once idle
/// for [`IDLE_SHRINK`] after a write, and at most every [`BUSY_SHRINK`]
/// while writes keep coming (a store whose small periodic writes never let
/// it idle): a burst of large writes fills the 64 MiB cache, which would
/// otherwise stay resident for the life of the process. The next group
/// re-reads the pages it needs from the OS cache.
const IDLE_SHRINK: std::time::Duration = std::time::Duration::from_secs(2);
const BUSY_SHRINK: std::time::Duration = std::time::Duration::from_secs(10);

struct Shrinker {
    wrote: bool,
    last: std::time::Instant,
}

impl Shrinker {
    fn shrink(&mut self, conn: &WriterConn) {
        let shrink = |c: &Connection| {
            if let Err(e) = c.execute_batch("PRAGMA shrink_memory;") {
                tracing::debug!(error = %e, "releasing the writer's page cache");
            }
        };
        match conn {
            WriterConn::Own(c) => shrink(c),
            WriterConn::Shared(m) => shrink(&lock(m)),
        }
        self.wrote = false;
        self.last = std::time::Instant::now();
    }

    /// After a group: shrink if writes have kept coming for a while.
    fn wrote(&mut self, conn: &WriterConn) {
        self.wrote = true;
        if self.last.elapsed() >= BUSY_SHRINK {
            self.shrink(conn);
        }
    }

    /// The next write job, shrinking the cache once if none comes for
    /// [`IDLE_SHRINK`] after a write. `None` when every sender is gone.
    fn next_job(&mut self, conn: &WriterConn, rx: &Receiver<WriteJob>) -> Option<WriteJob> {
        if self.wrote {
            match rx.recv_timeout(IDLE_SHRINK) {
                Ok(job) => return Some(job),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => self.shrink(conn),
            }
        }
        rx.recv().ok()
    }
}

fn writer_loop(conn: WriterConn, rx: Receiver<WriteJob>, head_file: Option<PathBuf>, busy_ms: u64) {
    let mut wipe_pending = false;
    let mut shrinker = Shrinker {
        wrote: false,
        last: std::time::Instant::now(),
    };
    while let Some(first) = shrinker.next_job(&conn, &rx) {
        let jobs = gather(first, &rx);
        // the head recorded outside the database, which the chain must still hold
        let anchor = head_file.as_deref().and_then(crate::head_copy::read);
        let (head, anchor_held) = match &conn {
            WriterConn::Own(c) => {
                write::commit_group_anchored(c, jobs, busy_ms, &mut wipe_pending, anchor.as_ref())
            }
            WriterConn::Shared(m) => write::commit_group_anchored(
                &lock(m),
                jobs,
                busy_ms,
                &mut wipe_pending,
                anchor.as_ref(),
            ),
        };
        if let (Some(path), Some(head)) = (&head_file, &head) {
            match &anchor {
                Some(a) if !anchor_held => crate::head_copy::warn_not_held(path, a),
                _ => crate::head_copy::record(path, head),
            }
        }
        shrinker.wrote(&conn);
    }
}

/// Longest a group waits for more batches after its first one.
const GATHER_MAX: std::time::Duration = std::time::Duration::from_millis(2);
/// A group closes when no further batch arrives within this gap.
const GATHER_GAP: std::time::Duration = std::time::Duration::from_micros(300);

/// Collects one group: everything queued now, then whatever keeps arriving
/// with gaps under `GATHER_GAP`, for at most `GATHER_MAX`. Callers released by
/// the previous commit resubmit within microseconds; waiting for them turns
/// alternating big/tiny groups into steady big ones (one fsync each). A lone
/// writer pays at most one `GATHER_GAP`.
fn gather(first: WriteJob, rx: &Receiver<WriteJob>) -> Vec<WriteJob> {
    let mut jobs = vec![first];
    let deadline = std::time::Instant::now() + GATHER_MAX;
    while jobs.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(j) => {
                jobs.push(j);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(GATHER_GAP.min(deadline - now)) {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    jobs
}

/// Keeps a copy of the newest chain head outside the database. Only moves
/// forward; best effort (the database stays the source of truth).
impl crate::engine::Engine for SqliteBackend {
    fn read(&self, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<()>) -> Result<()> {
        SqliteBackend::read(self, |c| f(&mut Tx::Sqlite(c)))
    }

    fn describe(&self) -> String {
        match &self.inner.location {
            Location::File { db, .. } => format!("sqlite:{}", db.display()),
            Location::Memory => "sqlite::memory:".to_owned(),
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<Vec<Change>> {
        self.submit(batch)
    }

    fn open_content(
        &self,
        digest: &kontextual_model::Digest,
    ) -> Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(crate::blobs::BlobReader::open(
            self.clone(),
            digest,
        )?))
    }

    fn status(&self) -> Result<crate::StoreStatus> {
        let size_bytes = self
            .db_path()
            .map(|p| {
                let f = |ext: &str| {
                    fs::metadata(p.with_extension(ext))
                        .map(|m| m.len())
                        .unwrap_or(0)
                };
                f("db") + f("db-wal")
            })
            .unwrap_or(0);
        self.read(|c| {
            let state = schema::inspect(c)?;
            let complete = state.pending.is_empty();
            let n = |sql: &str| if complete { read::count(c, sql) } else { Ok(0) };
            let store_id = c
                .query_row(
                    "SELECT value FROM store_meta WHERE key = 'store_id'",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or_default();
            Ok(crate::StoreStatus {
                backend: "sqlite".to_owned(),
                location: self.describe(),
                store_id,
                schema_version: state.current,
                latest_schema_version: latest_version(),
                pending_migrations: state
                    .pending
                    .iter()
                    .map(|m| format!("{:04}_{}", m.version, m.name))
                    .collect(),
                collections: n("SELECT count(*) FROM collections")?,
                artifacts_live: n("SELECT count(*) FROM artifacts WHERE state = 'live'")?,
                artifacts_deleted: n("SELECT count(*) FROM artifacts WHERE state = 'deleted'")?,
                artifacts_purged: n("SELECT count(*) FROM artifacts WHERE state = 'purged'")?,
                revisions: n("SELECT count(*) FROM revisions")?,
                relations_live: n("SELECT count(*) FROM relations WHERE deleted = 0")?,
                blobs: n("SELECT count(*) FROM blobs")?,
                blob_bytes: n("SELECT sum(size) FROM blobs")?,
                audit_records: n("SELECT count(*) FROM audit_log")?,
                audit_head: if complete { read::audit_head(c)? } else { None },
                outbox_events: n("SELECT count(*) FROM outbox")?,
                outbox_last_seq: n(
                    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
                )?,
                size_bytes,
            })
        })
    }

    fn verify_audit(
        &self,
        expect_head: Option<ChainHead>,
    ) -> Result<(kontextual_model::audit::ChainReport, Option<String>)> {
        check::verify_audit(self, expect_head)
    }

    fn check(&self, expect_head: Option<ChainHead>) -> Result<crate::CheckReport> {
        check::run(self, expect_head)
    }
}
