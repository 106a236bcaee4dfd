//! Group commit on async connections: Postgres' writer. (SQLite's is a thread of
//! its own, `sqlite_writer`: sqlx-sqlite costs a thread hop per statement, which
//! made this task the limit there; a Postgres statement is a network round trip
//! either way.) Every write of the store is a job sent over a channel to the
//! committer tasks, each owning a write connection (from a pool, so that a
//! connection lost with the database is replaced by a new one on the next batch),
//! taking turns at the queue. A committer takes whatever jobs have queued (up to
//! a bound), runs them in one transaction, commits once and only then answers
//! each job. Under low load a batch is a single job, so nothing waits for
//! company; under high load one commit serves hundreds of saga steps. An answer
//! always follows the commit that holds the job's writes, so whatever a caller is
//! told has happened survives `kill -9`.
//!
//! A job whose SQL fails must fail alone: when a batch fails it is rolled back and
//! its jobs are retried one per transaction, so each gets its own outcome. Domain
//! outcomes such as "not enough stock" are not errors: jobs report them as values,
//! decided by conditional statements, and never abort a batch.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::{Connection, Database, Pool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::StoreError;

/// One kind of write, with the SQL of one backend. The output is what the caller
/// learns once the write is committed.
pub(crate) trait WriteOp<DB: Database>: Send + 'static {
    type Output: Send + 'static;

    /// The product row this write locks first, if it knows. A batch runs its
    /// writes in the order of these keys, so two processes committing batches to
    /// one Postgres take product locks in the same order and cannot deadlock.
    fn lock_key(&self) -> Option<&str> {
        None
    }

    fn apply<'c>(
        &'c self,
        conn: &'c mut DB::Connection,
    ) -> BoxFuture<'c, Result<Self::Output, StoreError>>;
}

/// A queued write, its type erased so that one channel carries every kind.
pub(crate) trait Job<DB: Database>: Send {
    fn run<'c>(&'c mut self, conn: &'c mut DB::Connection)
    -> BoxFuture<'c, Result<(), StoreError>>;

    /// Answers the caller: with the job's output if its transaction committed,
    /// with the error otherwise.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);

    fn lock_key(&self) -> Option<&str>;
}

struct Queued<DB: Database, W: WriteOp<DB>> {
    op: W,
    output: Option<W::Output>,
    reply: oneshot::Sender<Result<W::Output, StoreError>>,
    _db: std::marker::PhantomData<fn() -> DB>,
}

impl<DB: Database, W: WriteOp<DB>> Job<DB> for Queued<DB, W> {
    fn run<'c>(
        &'c mut self,
        conn: &'c mut DB::Connection,
    ) -> BoxFuture<'c, Result<(), StoreError>> {
        Box::pin(async move {
            self.output = Some(self.op.apply(conn).await?);
            Ok(())
        })
    }

    fn lock_key(&self) -> Option<&str> {
        self.op.lock_key()
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let Queued { output, reply, .. } = *self;
        let answer = committed.and_then(|()| output.ok_or(StoreError::NotApplied));
        // The caller may have gone away (a dropped request); the write stands anyway.
        let _ = reply.send(answer);
    }
}

/// The sending side, held by the store.
pub(crate) struct Writer<DB: Database> {
    jobs: mpsc::Sender<Box<dyn Job<DB>>>,
}

impl<DB: Database> Clone for Writer<DB> {
    fn clone(&self) -> Self {
        Writer {
            jobs: self.jobs.clone(),
        }
    }
}

impl<DB: Database> Writer<DB> {
    /// Starts the writer task on the current runtime. It ends once every `Writer`
    /// handle is dropped and the queue is drained.
    ///
    /// `committers` batches may be committing at once, each on a connection of
    /// its own (the pool should have as many): one for SQLite, whose file has one
    /// writer; several for Postgres, where a commit is a network round trip and
    /// row locks keep concurrent batches apart.
    pub(crate) fn spawn(pool: Pool<DB>, max_batch: usize, committers: usize) -> Writer<DB>
    where
        DB::Connection: Connection<Database = DB>,
    {
        let (jobs, queue) = mpsc::channel(max_batch * 4);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..committers.max(1) {
            tokio::spawn(run(pool.clone(), Arc::clone(&queue), max_batch));
        }
        Writer { jobs }
    }

    /// Queues `op` and waits until it is committed (or failed).
    pub(crate) async fn write<W: WriteOp<DB>>(&self, op: W) -> Result<W::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Queued {
            op,
            output: None,
            reply,
            _db: std::marker::PhantomData,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn run<DB: Database>(
    pool: Pool<DB>,
    queue: Arc<Mutex<mpsc::Receiver<Box<dyn Job<DB>>>>>,
    max_batch: usize,
) where
    DB::Connection: Connection<Database = DB>,
{
    let mut batch = Vec::with_capacity(max_batch);
    // One committer at a time takes what has queued; it lets go of the queue
    // before committing, so the next batch gathers meanwhile.
    while queue.lock().await.recv_many(&mut batch, max_batch).await > 0 {
        tracing::trace!(jobs = batch.len(), "group commit");
        // Keyed writes first, by key; the order of concurrent writes is free.
        batch.sort_by(|a, b| {
            (a.lock_key().is_none(), a.lock_key()).cmp(&(b.lock_key().is_none(), b.lock_key()))
        });
        match pool.acquire().await {
            Ok(mut conn) => commit(&mut *conn, &mut batch).await,
            Err(error) => {
                // The database is away: every job fails now, and its caller decides
                // (a request answers 503, a saga retries later).
                let error = Arc::new(error);
                for job in batch.drain(..) {
                    job.finish(Err(StoreError::Unreachable(Arc::clone(&error))));
                }
            }
        }
    }
    tracing::debug!("writer stopped: every store handle is gone");
}

/// Commits the batch in one transaction, or, when that fails, each job in its own.
async fn commit<DB: Database>(conn: &mut DB::Connection, batch: &mut Vec<Box<dyn Job<DB>>>)
where
    DB::Connection: Connection<Database = DB>,
{
    match transact(conn, batch).await {
        Ok(()) => batch.drain(..).for_each(|job| job.finish(Ok(()))),
        Err(error) if batch.len() == 1 => {
            if let Some(job) = batch.pop() {
                job.finish(Err(error));
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, jobs = batch.len(), "batch failed; retrying its writes one by one");
            for job in batch.drain(..) {
                let mut single = [job];
                let result = transact(conn, &mut single).await;
                let [job] = single;
                job.finish(result);
            }
        }
    }
}

async fn transact<DB: Database>(
    conn: &mut DB::Connection,
    jobs: &mut [Box<dyn Job<DB>>],
) -> Result<(), StoreError>
where
    DB::Connection: Connection<Database = DB>,
{
    let mut tx = conn.begin().await?;
    for job in jobs.iter_mut() {
        job.run(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::future::join_all;
    use sqlx::Sqlite;
    use sqlx::sqlite::{SqliteConnection, SqlitePoolOptions};

    use super::*;

    /// A write that only notes when it ran.
    struct Note {
        key: Option<&'static str>,
        ran: Arc<Mutex<Vec<Option<&'static str>>>>,
    }

    impl WriteOp<Sqlite> for Note {
        type Output = ();

        fn lock_key(&self) -> Option<&str> {
            self.key
        }

        fn apply<'c>(
            &'c self,
            _: &'c mut SqliteConnection,
        ) -> BoxFuture<'c, Result<(), StoreError>> {
            Box::pin(async move {
                self.ran
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(self.key);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_batch_takes_its_locks_in_key_order() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("an in-memory database");
        let writer = Writer::spawn(pool, 64, 1);
        let ran = Arc::new(Mutex::new(Vec::new()));
        let keys = [Some("p3"), None, Some("p1"), Some("p2"), None, Some("p1")];
        // Queued together, before the writer runs: one batch.
        let writes = keys.map(|key| {
            writer.write(Note {
                key,
                ran: Arc::clone(&ran),
            })
        });
        for result in join_all(writes).await {
            assert!(result.is_ok());
        }
        let ran = ran.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(
            ran,
            [Some("p1"), Some("p1"), Some("p2"), Some("p3"), None, None]
        );
    }
}
