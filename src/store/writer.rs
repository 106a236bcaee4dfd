//! Group commit, the same for both backends. Every write of the store is a job
//! sent over a channel to the committer tasks, each owning a write connection
//! (from a pool, so that a connection lost with the database is replaced on the
//! next batch), taking turns at the queue. A committer takes whatever jobs have
//! queued (up to a bound), applies them in one transaction (set-based: a fixed
//! number of statements however many jobs, see `batch`), commits once and only
//! then answers each job. Under low load a batch is a single job, so nothing waits
//! for company; under high load one commit serves hundreds of saga steps. An
//! answer always follows the commit that holds the job's writes, so whatever a
//! caller is told has happened survives `kill -9`.
//!
//! Domain outcomes (not enough stock, a key used before, an order that moved on)
//! are values decided by the statements, never errors. A batch whose SQL fails
//! anyway is rolled back and its jobs retried one per transaction, so a bad write
//! fails alone.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::{Connection, Database, Pool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    CreateOrderOutcome, NewOrder, OrderTransition, Reserve, Reserved, Settle, Settled,
    StockedProduct, StoreError,
};
use crate::domain::{OrderEvent, Payment, Product};

/// A backend's set-based application of a batch (see `batch`, compiled once per
/// backend): it fills in every job's output, or fails as a whole.
pub(crate) trait ApplyBatch: Database {
    fn apply<'c>(
        conn: &'c mut Self::Connection,
        jobs: &'c mut [Job],
    ) -> BoxFuture<'c, Result<(), StoreError>>;
}

/// One queued write: what it asks, what it came to once applied, and whom to tell.
pub(crate) struct Pending<I, O> {
    pub(crate) input: I,
    pub(crate) output: Option<O>,
    reply: oneshot::Sender<Result<O, StoreError>>,
}

impl<I, O> Pending<I, O> {
    fn finish(self, committed: Result<(), StoreError>) {
        let answer = committed.and_then(|()| self.output.ok_or(StoreError::NotApplied));
        // The caller may have gone away (a dropped request); the write stands anyway.
        let _ = self.reply.send(answer);
    }
}

/// Declares the kinds of write: each a variant of [`Job`] and a [`Write`].
macro_rules! jobs {
    ($($kind:ident($input:ty => $output:ty)),* $(,)?) => {
        /// A queued write of any kind, so that one channel carries them all.
        pub(crate) enum Job {
            $($kind(Pending<$input, $output>),)*
        }

        impl Job {
            fn finish(self, committed: Result<(), StoreError>) {
                match self {
                    $(Job::$kind(job) => job.finish(committed),)*
                }
            }

            /// Forgets what a rolled-back attempt produced.
            fn reset(&mut self) {
                match self {
                    $(Job::$kind(job) => job.output = None,)*
                }
            }
        }

        $(impl Write for $input {
            type Output = $output;
            fn job(self, reply: oneshot::Sender<Result<$output, StoreError>>) -> Job {
                Job::$kind(Pending { input: self, output: None, reply })
            }
        })*
    };
}

jobs! {
    Upsert(Product => StockedProduct),
    Create(NewOrder => CreateOrderOutcome),
    Reserve(Reserve => Reserved),
    Settle(Settle => Settled),
    Pay(Payment => Payment),
    Advance(OrderTransition => Option<OrderEvent>),
}

/// What can be written, and what the caller learns once it is committed.
pub(crate) trait Write: Send + 'static {
    type Output: Send + 'static;
    fn job(self, reply: oneshot::Sender<Result<Self::Output, StoreError>>) -> Job;
}

/// The sending side, held by the store.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts `committers` committer tasks on the current runtime, each
    /// committing on a connection of its own from `pool` (which should have as
    /// many): one for SQLite, whose file has one writer; several for Postgres,
    /// where a commit is a network round trip and row locks keep concurrent
    /// batches apart. They end once every `Writer` is dropped and the queue is
    /// drained.
    pub(crate) fn spawn<DB: ApplyBatch>(
        pool: Pool<DB>,
        max_batch: usize,
        committers: usize,
    ) -> Writer
    where
        DB::Connection: Connection<Database = DB>,
    {
        let max_batch = max_batch.max(1);
        let (jobs, queue) = mpsc::channel(max_batch * 4);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..committers.max(1) {
            tokio::spawn(run(pool.clone(), Arc::clone(&queue), max_batch));
        }
        Writer { jobs }
    }

    /// Queues `op` and waits until it is committed (or failed).
    pub(crate) async fn write<W: Write>(&self, op: W) -> Result<W::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(op.job(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn run<DB: ApplyBatch>(
    pool: Pool<DB>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
) where
    DB::Connection: Connection<Database = DB>,
{
    let mut batch = Vec::with_capacity(max_batch);
    // One committer at a time takes what has queued; it lets go of the queue
    // before committing, so the next batch gathers meanwhile.
    while queue.lock().await.recv_many(&mut batch, max_batch).await > 0 {
        tracing::trace!(jobs = batch.len(), "group commit");
        match pool.acquire().await {
            Ok(mut conn) => commit::<DB>(&mut conn, &mut batch).await,
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
pub(super) async fn commit<DB: ApplyBatch>(conn: &mut DB::Connection, batch: &mut Vec<Job>)
where
    DB::Connection: Connection<Database = DB>,
{
    match transact::<DB>(conn, batch).await {
        Ok(()) => batch.drain(..).for_each(|job| job.finish(Ok(()))),
        Err(error) if batch.len() == 1 => {
            if let Some(job) = batch.pop() {
                job.finish(Err(error));
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, jobs = batch.len(), "batch failed; retrying its writes one by one");
            for mut job in batch.drain(..) {
                job.reset();
                let result = transact::<DB>(conn, std::slice::from_mut(&mut job)).await;
                job.finish(result);
            }
        }
    }
}

pub(super) async fn transact<DB: ApplyBatch>(
    conn: &mut DB::Connection,
    jobs: &mut [Job],
) -> Result<(), StoreError>
where
    DB::Connection: Connection<Database = DB>,
{
    let mut tx = conn.begin().await?;
    DB::apply(&mut tx, jobs).await?;
    tx.commit().await?;
    Ok(())
}
