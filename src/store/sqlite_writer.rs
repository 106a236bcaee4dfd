//! Group commit for SQLite, on a thread of its own. The async writer (`writer`)
//! drives sqlx, whose SQLite connection runs on a worker thread of its own: every
//! statement is a round trip between the writer task and that thread, some 100 µs
//! under load, and an order takes a dozen statements, so the writer was the limit
//! however large its batches grew. Here one `std::thread` owns a synchronous
//! rusqlite connection and runs a whole batch itself, BEGIN to COMMIT, with
//! prepared statements that it keeps: one hop per batch, not one per statement.
//!
//! The semantics are those of `writer`. Every SQLite write in the process is a job
//! sent over a channel; the thread takes whatever jobs have queued (up to a
//! bound), runs them in one transaction, commits once and only then answers each
//! job, so whatever a caller is told has happened survives `kill -9`. When a batch
//! fails it is rolled back and its jobs are retried one per transaction, so a bad
//! write fails alone. Domain outcomes are values, never errors. There is no lock
//! order to keep: one process owns the file and this is its only writer.
//!
//! Callers never block: they send on a tokio channel and await a oneshot. The
//! thread waits on the channel with `blocking_recv_many`, and ends once every
//! handle is dropped and the queue is drained.
//!
//! Checkpoints (copying the WAL back into the database file) run on a second
//! thread with a connection of its own. SQLite would otherwise run one inside a
//! commit every 1,000 pages, with its two fsyncs: 15-40 ms on this kind of disk,
//! several times a second under load, while every queued write waits. SQLite
//! starts the WAL over only when a write begins with all of it copied. Past a
//! limit, the background thread therefore checkpoints back to back until one
//! finds it all copied, which happens in any pause between commits; when writes
//! leave no such pause and the WAL reaches eight times the limit, the writer
//! asks for its turn (SQLite runs one checkpoint at a time), copies what is left
//! itself, and its next commit starts the WAL afresh. Should a reader still be on
//! old pages, the WAL goes on a while longer and the writer tries again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// One kind of SQLite write. The output is what the caller learns once the write
/// is committed.
pub(crate) trait SqliteWrite: Send + 'static {
    type Output: Send + 'static;

    fn apply(&self, tx: &Transaction<'_>) -> Result<Self::Output, StoreError>;
}

/// A queued write, its type erased so that one channel carries every kind.
trait Job: Send {
    fn run(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError>;

    /// Answers the caller: with the job's output if its transaction committed,
    /// with the error otherwise.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Queued<W: SqliteWrite> {
    op: W,
    output: Option<W::Output>,
    reply: oneshot::Sender<Result<W::Output, StoreError>>,
}

impl<W: SqliteWrite> Job for Queued<W> {
    fn run(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        self.output = Some(self.op.apply(tx)?);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let Queued { output, reply, .. } = *self;
        let answer = committed.and_then(|()| output.ok_or(StoreError::NotApplied));
        // The caller may have gone away (a dropped request); the write stands anyway.
        let _ = reply.send(answer);
    }
}

/// How the writer opens its connection to an existing, migrated database.
#[derive(Debug, Clone)]
pub(crate) struct WriterOptions {
    pub(crate) path: PathBuf,
    /// `NORMAL` or `FULL`.
    pub(crate) synchronous: &'static str,
    pub(crate) busy_timeout: Duration,
    /// Most writes one commit may carry.
    pub(crate) max_batch: usize,
    /// How often the background checkpoint runs.
    pub(crate) checkpoint_every: Duration,
    /// WAL pages past which the background checkpoints run back to back; past
    /// eight times this, the writer checkpoints itself.
    pub(crate) wal_limit_pages: i64,
}

impl WriterOptions {
    /// A checkpoint every 20 ms, so that each has little to sync, and back to
    /// back past 4,096 pages (16 MB); the writer steps in past 128 MB. Chosen with
    /// the load benchmark at 2,000 orders/s: the order POST's p99 was 12-13 ms
    /// with limits of 4 to 32 MB, 18 ms with checkpoints 100 ms apart, 24 ms with
    /// a 64 MB limit, and 50 ms when the writer stepped in at 16 MB (each time it
    /// does, its queue waits for two fsyncs).
    pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
    pub(crate) const WAL_LIMIT_PAGES: i64 = 4_096;
}

/// The WAL as the last background checkpoint found it, and whose turn it is.
#[derive(Default)]
struct WalState {
    /// Pages in the WAL.
    pages: AtomicI64,
    /// The writer wants the next checkpoint: the background thread stands aside,
    /// as SQLite turns a second checkpoint away while one runs.
    writer_turn: AtomicBool,
}

/// How many times the limit the WAL may reach before the writer steps in.
const WRITER_STEPS_IN: i64 = 8;

/// What `PRAGMA wal_checkpoint` answered.
struct Checkpoint {
    /// Another checkpoint was running: this one did nothing.
    busy: bool,
    /// Pages in the WAL.
    pages: i64,
    /// Pages of it now in the database file.
    copied: i64,
}

impl Checkpoint {
    /// Everything copied: the next write transaction may start the WAL over.
    fn complete(&self) -> bool {
        !self.busy && self.copied == self.pages
    }
}

/// The sending side, held by the store.
#[derive(Clone)]
pub(crate) struct SqliteWriter {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl SqliteWriter {
    /// Opens the writer's connection on a new thread, which then serves every
    /// write until all handles are dropped.
    pub(crate) async fn spawn(options: WriterOptions) -> Result<SqliteWriter, StoreError> {
        let max_batch = options.max_batch.max(1);
        let (jobs, queue) = mpsc::channel(max_batch * 4);
        let (opened, ready) = oneshot::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let wal = Arc::new(WalState::default());
                let started = open(&options).and_then(|conn| {
                    let checkpointer = Checkpointer::start(&options, Arc::clone(&wal))?;
                    Ok((conn, checkpointer))
                });
                match started {
                    Ok((conn, checkpointer)) => {
                        let _ = opened.send(Ok(()));
                        run(conn, queue, max_batch, CatchUp::new(&options, wal));
                        // The background checkpoints stop with the writer.
                        drop(checkpointer);
                    }
                    Err(error) => {
                        let _ = opened.send(Err(error));
                    }
                }
            })
            .map_err(StoreError::WriterStart)?;
        ready.await.map_err(|_| StoreError::WriterGone)??;
        Ok(SqliteWriter { jobs })
    }

    /// Queues `op` and waits until it is committed (or failed).
    pub(crate) async fn write<W: SqliteWrite>(&self, op: W) -> Result<W::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Queued {
            op,
            output: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// The write connection: WAL, so the read pool never blocks it; `synchronous` as
/// configured, so a commit is as durable as the options say; foreign keys on, as
/// sqlx has them on the reads; no automatic checkpoints (see the module doc).
fn open(options: &WriterOptions) -> Result<Connection, StoreError> {
    let conn = connect(options)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "journal mode {mode:?} where WAL was asked for"
        )));
    }
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Every statement the writes use stays prepared.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A connection to the database with the configured `synchronous`, which also
/// decides how a checkpoint syncs.
fn connect(options: &WriterOptions) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        &options.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "synchronous", options.synchronous)?;
    Ok(conn)
}

/// Copies the WAL into the database file as far as readers allow, without
/// blocking the writer, unless another checkpoint is running.
fn checkpoint(conn: &Connection) -> Result<Checkpoint, StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Checkpoint {
            busy: row.get::<_, i64>(0)? != 0,
            pages: row.get(1)?,
            copied: row.get(2)?,
        })
    })?)
}

/// The background checkpoint thread; dropping this stops it.
struct Checkpointer {
    _stop: SyncSender<()>,
}

impl Checkpointer {
    /// Opens its connection and starts the thread, which publishes what it found
    /// in `wal` after each checkpoint, and skips its turn while the writer wants it.
    fn start(options: &WriterOptions, wal: Arc<WalState>) -> Result<Checkpointer, StoreError> {
        let conn = connect(options)?;
        let (every, limit) = (options.checkpoint_every, options.wal_limit_pages);
        let (stop, stopped) = sync_channel::<()>(0);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut pause = every;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(pause) {
                    pause = every;
                    if wal.writer_turn.load(Ordering::Acquire) {
                        continue;
                    }
                    match checkpoint(&conn) {
                        Ok(done) if !done.busy => {
                            wal.pages.store(done.pages, Ordering::Relaxed);
                            // Past the limit, go again at once until one finds
                            // everything copied; the next write then starts the
                            // WAL over. (Only a reader on old pages holds a
                            // checkpoint back, and reads here are short.)
                            if done.pages > limit && !done.complete() {
                                pause = Duration::ZERO;
                            }
                        }
                        // The writer's own checkpoint was running.
                        Ok(_) => {}
                        Err(error) => tracing::warn!(error = %error, "WAL checkpoint failed"),
                    }
                }
            })
            .map_err(StoreError::WriterStart)?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn run(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    mut catch_up: CatchUp,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while queue.blocking_recv_many(&mut batch, max_batch) > 0 {
        tracing::trace!(jobs = batch.len(), "group commit");
        commit(&mut conn, &mut batch);
        catch_up.after_commit(&conn);
    }
    tracing::debug!("sqlite writer stopped: every store handle is gone");
}

/// The writer's own checkpoint: it copies what the background ones have not, so
/// that its next commit starts the WAL over. Until it has copied everything, the
/// background thread stands aside and the writer tries again after a later commit.
struct CatchUp {
    wal: Arc<WalState>,
    /// WAL pages past which the writer steps in.
    past_pages: i64,
    /// At most one try per interval: a try that a reader holds back still syncs.
    every: Duration,
    last_try: Option<Instant>,
}

impl CatchUp {
    fn new(options: &WriterOptions, wal: Arc<WalState>) -> CatchUp {
        CatchUp {
            wal,
            past_pages: options.wal_limit_pages.saturating_mul(WRITER_STEPS_IN),
            every: options.checkpoint_every,
            last_try: None,
        }
    }

    fn after_commit(&mut self, conn: &Connection) {
        if self.last_try.is_some_and(|at| at.elapsed() < self.every) {
            return;
        }
        let wal = &self.wal;
        if !wal.writer_turn.load(Ordering::Relaxed)
            && wal.pages.load(Ordering::Relaxed) <= self.past_pages
        {
            return;
        }
        self.last_try = Some(Instant::now());
        wal.writer_turn.store(true, Ordering::Release);
        match checkpoint(conn) {
            Ok(done) if done.complete() => {
                wal.pages.store(0, Ordering::Relaxed);
                wal.writer_turn.store(false, Ordering::Release);
            }
            // A background checkpoint was still running, or a reader holds pages back.
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "WAL checkpoint failed");
                wal.writer_turn.store(false, Ordering::Release);
            }
        }
    }
}

/// Commits the batch in one transaction, or, when that fails, each job in its own.
fn commit(conn: &mut Connection, batch: &mut Vec<Box<dyn Job>>) {
    match transact(conn, batch) {
        Ok(()) => batch.drain(..).for_each(|job| job.finish(Ok(()))),
        Err(error) if batch.len() == 1 => {
            if let Some(job) = batch.pop() {
                job.finish(Err(error));
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, jobs = batch.len(), "batch failed; retrying its writes one by one");
            for mut job in batch.drain(..) {
                let result = transact(conn, std::slice::from_mut(&mut job));
                job.finish(result);
            }
        }
    }
}

/// Runs the jobs in one transaction. `IMMEDIATE` takes the write lock at once;
/// a transaction dropped unfinished (an error) is rolled back.
fn transact(conn: &mut Connection, jobs: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in jobs.iter_mut() {
        job.run(&tx)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use futures_util::future::join_all;

    use super::*;

    /// Inserts its value (0 breaks the table's CHECK, and so its transaction) and
    /// answers how many rows another connection saw committed meanwhile.
    struct Put {
        value: i64,
        path: PathBuf,
    }

    impl SqliteWrite for Put {
        type Output = i64;

        fn apply(&self, tx: &Transaction<'_>) -> Result<i64, StoreError> {
            tx.prepare_cached("INSERT INTO note (value) VALUES (?1)")?
                .execute([self.value])?;
            Ok(committed(&self.path))
        }
    }

    /// Holds the writer until released, so that the jobs sent meanwhile queue up
    /// and make the next batch together.
    struct Gate {
        started: Mutex<Option<oneshot::Sender<()>>>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl SqliteWrite for Gate {
        type Output = ();

        fn apply(&self, _: &Transaction<'_>) -> Result<(), StoreError> {
            if let Some(started) = self.started.lock().ok().and_then(|mut s| s.take()) {
                let _ = started.send(());
            }
            if let Ok(release) = self.release.lock() {
                let _ = release.recv_timeout(Duration::from_secs(10));
            }
            Ok(())
        }
    }

    fn database() -> (tempfile::TempDir, WriterOptions) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("writer.db");
        Connection::open(&path)
            .expect("a database")
            .execute_batch("CREATE TABLE note (value INTEGER NOT NULL CHECK (value <> 0))")
            .expect("a table");
        let options = WriterOptions {
            path,
            synchronous: "NORMAL",
            busy_timeout: Duration::from_secs(5),
            max_batch: 64,
            checkpoint_every: WriterOptions::CHECKPOINT_EVERY,
            wal_limit_pages: WriterOptions::WAL_LIMIT_PAGES,
        };
        (dir, options)
    }

    /// The rows committed, as another connection sees them.
    fn committed(path: &Path) -> i64 {
        Connection::open(path)
            .and_then(|conn| conn.query_row("SELECT count(*) FROM note", [], |row| row.get(0)))
            .expect("a count")
    }

    /// Sends a put of each value while the writer is held, so that they make one
    /// batch, and answers what each write was answered.
    async fn one_batch(
        writer: &SqliteWriter,
        options: &WriterOptions,
        values: &[i64],
    ) -> Vec<Result<i64, StoreError>> {
        let (started, has_started) = oneshot::channel();
        let (release, released) = std::sync::mpsc::channel();
        let gate = tokio::spawn({
            let writer = writer.clone();
            async move {
                let gate = Gate {
                    started: Mutex::new(Some(started)),
                    release: Mutex::new(released),
                };
                writer.write(gate).await
            }
        });
        has_started.await.expect("the gate runs");
        let puts: Vec<_> = values
            .iter()
            .map(|&value| {
                let writer = writer.clone();
                let path = options.path.clone();
                tokio::spawn(async move { writer.write(Put { value, path }).await })
            })
            .collect();
        while writer.jobs.max_capacity() - writer.jobs.capacity() < values.len() {
            tokio::task::yield_now().await;
        }
        release.send(()).expect("the gate waits");
        gate.await.expect("the gate").expect("the gate commits");
        join_all(puts)
            .await
            .into_iter()
            .map(|answer| answer.expect("a put"))
            .collect()
    }

    /// A row of `size` bytes, enough to fill pages of the WAL.
    struct Blob(usize);

    impl SqliteWrite for Blob {
        type Output = ();

        fn apply(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
            tx.prepare_cached("INSERT INTO blob (data) VALUES (?1)")?
                .execute([vec![7u8; self.0]])?;
            Ok(())
        }
    }

    fn blob_table(options: &WriterOptions) {
        Connection::open(&options.path)
            .and_then(|conn| conn.execute_batch("CREATE TABLE blob (data BLOB NOT NULL)"))
            .expect("a table");
    }

    /// The WAL file's length: it grows, and is never cut back here, so this is
    /// the most the WAL has held.
    fn wal_bytes(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    #[tokio::test]
    async fn the_wal_reaches_the_database_file_without_the_writer() {
        let (_dir, mut options) = database();
        blob_table(&options);
        // The writer never checkpoints itself here, and SQLite's own automatic
        // checkpoint is off: only the background thread copies the WAL.
        options.wal_limit_pages = i64::MAX;
        options.checkpoint_every = Duration::from_millis(20);
        let writer = SqliteWriter::spawn(options.clone())
            .await
            .expect("a writer");
        for _ in 0..64 {
            writer.write(Blob(16 * 1024)).await.expect("committed");
        }
        let size = || std::fs::metadata(&options.path).map_or(0, |m| m.len());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < 1024 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes: nothing checkpointed the WAL",
                size()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_wal_starts_over_under_steady_writes() {
        let (_dir, mut options) = database();
        blob_table(&options);
        options.wal_limit_pages = 64;
        options.checkpoint_every = Duration::from_millis(5);
        let writer = SqliteWriter::spawn(options.clone())
            .await
            .expect("a writer");
        // Some 6,000 pages in all: a WAL that never started over would hold them
        // all, one that does stays near the writer's 8 x 64 pages. The short
        // pauses let the checkpoint thread run however busy the machine is (the
        // writer steps in on what that thread last found); without them, the
        // whole run could pass while it waits for a core.
        for written in 1..=1_500 {
            writer.write(Blob(12 * 1024)).await.expect("committed");
            if written % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let frame = 4096 + 24;
        let bytes = wal_bytes(&options.path);
        assert!(bytes < 3_000 * frame, "the WAL reached {bytes} bytes");
    }

    #[tokio::test]
    async fn a_batch_commits_once_and_answers_every_job() {
        let (_dir, options) = database();
        let writer = SqliteWriter::spawn(options.clone())
            .await
            .expect("a writer");
        let answers = one_batch(&writer, &options, &[1, 2, 3, 4, 5]).await;
        // No job saw another's row committed: one commit, after the last job.
        let seen: Vec<i64> = answers.into_iter().map(|a| a.expect("committed")).collect();
        assert_eq!(seen, [0, 0, 0, 0, 0]);
        // And it came before the answers.
        assert_eq!(committed(&options.path), 5);
    }

    #[tokio::test]
    async fn a_failing_job_fails_alone() {
        let (_dir, options) = database();
        let writer = SqliteWriter::spawn(options.clone())
            .await
            .expect("a writer");
        let answers = one_batch(&writer, &options, &[1, 2, 0, 3]).await;
        assert!(matches!(answers[2], Err(StoreError::Sqlite(_))));
        // The batch was rolled back, and the others retried one per commit.
        let seen: Vec<i64> = answers.into_iter().filter_map(Result::ok).collect();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(committed(&options.path), 3);
    }
}
