//! Group commit, the same for both backends. Every write of the store is a job
//! sent over a channel to the backend's committer (Postgres: tasks, each with a
//! pooled connection; SQLite: a thread of its own with the one write connection,
//! rusqlite, so that a batch's statements cost no hop between threads). A
//! committer takes whatever jobs have queued (up to a bound), applies them in one
//! transaction (set-based: a fixed number of statements however many jobs, see
//! `batch`), commits once and only then answers each job. Under low load a batch
//! is a single job, so nothing waits for company; under high load one commit
//! serves hundreds of saga steps. An answer always follows the commit that holds
//! the job's writes, so whatever a caller is told has happened survives `kill -9`.
//!
//! Domain outcomes (not enough stock, a key used before, an order that moved on)
//! are values decided by the statements, never errors. A batch whose SQL fails
//! anyway is rolled back and its jobs retried one per transaction, so a bad write
//! fails alone.

use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::dialect::Dialect;
use super::{
    AdminSessionRow, CartChange, Changes, CreateOrderOutcome, EndSession, NewOrder,
    OrderTransition, Prune, Pruned, Reserve, Reserved, Settle, Settled, SharedSecret, Stall,
    StockedProduct, StoreError,
};
use crate::domain::{OrderEvent, Payment, Product};
use crate::meters;

/// A backend's write connection, as the committer and a batch use it: each
/// statement is a template whose `#ROWS(…)` the backend fills with the rows
/// (see `dialect`), and answers rows of plain values.
pub(crate) trait Tx: Send {
    const DIALECT: Dialect;
    fn begin(&mut self) -> BoxFuture<'_, Result<(), StoreError>>;
    fn commit(&mut self) -> BoxFuture<'_, Result<(), StoreError>>;
    fn rollback(&mut self) -> BoxFuture<'_, Result<(), StoreError>>;
    fn execute<'a, I: Serialize + Sync>(
        &'a mut self,
        template: &'static str,
        rows: &'a [I],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn fetch<'a, R: FromCells + Send + 'static, I: Serialize + Sync>(
        &'a mut self,
        template: &'static str,
        rows: &'a [I],
    ) -> BoxFuture<'a, Result<Vec<R>, StoreError>>;
    /// Tells other instances what the batch changed, when it commits.
    fn announce<'a>(&'a mut self, changes: &'a Changes) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A row as a driver hands it over: each backend decodes its own column types
/// into the same Rust values (a UUID is a 16-byte blob in SQLite, a time RFC
/// 3339 text).
pub(crate) trait Cells {
    fn int(&self, column: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: usize) -> Result<Option<String>, StoreError>;
    fn uuid(&self, column: usize) -> Result<Option<Uuid>, StoreError>;
    fn time(&self, column: usize) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// A value read from a column by its Rust type.
pub(crate) trait Cell: Sized {
    fn read(row: &impl Cells, column: usize) -> Result<Option<Self>, StoreError>;
}

macro_rules! cells {
    ($($ty:ty => $read:ident),*) => {$(
        impl Cell for $ty {
            fn read(row: &impl Cells, column: usize) -> Result<Option<Self>, StoreError> {
                row.$read(column)
            }
        }
    )*};
}
cells!(i64 => int, String => text, Uuid => uuid, DateTime<Utc> => time);

/// A column that may be NULL.
impl<T: Cell> Cell for Option<T> {
    fn read(row: &impl Cells, column: usize) -> Result<Option<Self>, StoreError> {
        T::read(row, column).map(Some)
    }
}

/// Reads a column, which is NULL only if `T` is an `Option`.
pub(crate) fn get<T: Cell>(row: &impl Cells, column: usize) -> Result<T, StoreError> {
    T::read(row, column)?.ok_or_else(|| super::corrupt("a column", format!("{column} is NULL")))
}

/// A row of a statement, decoded from either driver.
pub(crate) trait FromCells: Sized {
    /// From the row's columns, starting at column `at` (after others).
    fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError>;

    fn from_cells(row: &impl Cells) -> Result<Self, StoreError> {
        Self::from_cells_at(row, 0)
    }
}

macro_rules! tuples {
    ($(($($t:ident $i:tt),*)),*) => {$(
        impl<$($t: Cell),*> FromCells for ($($t,)*) {
            fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError> {
                Ok(($(get::<$t>(row, at + $i)?,)*))
            }
        }
    )*};
}
tuples!((A 0), (A 0, B 1), (A 0, B 1, C 2));

/// One queued write: what it asks, what it came to once applied, and whom to tell.
pub(crate) struct Pending<I, O> {
    pub(crate) input: I,
    pub(crate) output: Option<O>,
    reply: oneshot::Sender<Result<O, StoreError>>,
    /// A job still queued after this is refused unapplied ([`StoreError::Overdue`]).
    not_after: Option<Instant>,
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

            /// Whether the job waited in the queue past its `not_after`.
            fn overdue(&self, now: Instant) -> bool {
                match self {
                    $(Job::$kind(job) => job.not_after.is_some_and(|at| now > at),)*
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
            fn job(
                self,
                reply: oneshot::Sender<Result<$output, StoreError>>,
                not_after: Option<Instant>,
            ) -> Job {
                Job::$kind(Pending { input: self, output: None, reply, not_after })
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
    OpenSession(AdminSessionRow => ()),
    EndSession(EndSession => bool),
    Secret(SharedSecret => String),
    Prune(Prune => Pruned),
    Stall(Stall => bool),
    Cart(CartChange => ()),
}

/// What can be written, and what the caller learns once it is committed.
pub(crate) trait Write: Send + 'static {
    type Output: Send + 'static;
    fn job(
        self,
        reply: oneshot::Sender<Result<Self::Output, StoreError>>,
        not_after: Option<Instant>,
    ) -> Job;
}

/// The sending side, held by the store.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// A writer and the queue its committers take batches from.
    pub(crate) fn channel(max_batch: usize) -> (Writer, mpsc::Receiver<Job>) {
        let (jobs, queue) = mpsc::channel(max_batch.max(1) * 4);
        (Writer { jobs }, queue)
    }

    /// Queues `op` and waits until it is committed (or failed).
    pub(crate) async fn write<W: Write>(&self, op: W) -> Result<W::Output, StoreError> {
        self.write_by(op, None).await
    }

    /// As [`Writer::write`], but refused unapplied ([`StoreError::Overdue`])
    /// if it is still queued at `not_after`: for a new order, which is better
    /// refused than placed late (admission control, `actors::admission`).
    pub(crate) async fn write_by<W: Write>(
        &self,
        op: W,
        not_after: Option<Instant>,
    ) -> Result<W::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(op.job(reply, not_after))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) fn downgrade(&self) -> WeakWriter {
        WeakWriter(self.jobs.downgrade())
    }
}

/// A writer that does not keep the committers alive: for background work that
/// should end when the store is dropped.
pub(crate) struct WeakWriter(mpsc::WeakSender<Job>);

impl WeakWriter {
    pub(crate) fn upgrade(&self) -> Option<Writer> {
        self.0.upgrade().map(|jobs| Writer { jobs })
    }
}

/// Fails every job of a batch that could not get a connection: its caller decides
/// (a request answers 503, a saga retries later).
pub(crate) fn fail(batch: &mut Vec<Job>, error: impl Fn() -> StoreError) {
    batch.drain(..).for_each(|job| job.finish(Err(error())));
}

/// Commits the batch in one transaction, or, when that fails, each job in its
/// own; then answers every job. Says whether the batch committed as one.
pub(crate) fn commit<'a, C: Tx>(conn: &'a mut C, batch: &'a mut Vec<Job>) -> BoxFuture<'a, bool> {
    Box::pin(commit_batch(conn, batch))
}

async fn commit_batch<C: Tx>(conn: &mut C, batch: &mut Vec<Job>) -> bool {
    let now = Instant::now();
    for job in batch.extract_if(.., |job| job.overdue(now)) {
        job.finish(Err(StoreError::Overdue));
    }
    if batch.is_empty() {
        return true;
    }
    tracing::trace!(jobs = batch.len(), "group commit");
    let backend = C::DIALECT.name();
    metrics::histogram!(meters::STORE_BATCH_SIZE, "backend" => backend).record(batch.len() as f64);
    let started = std::time::Instant::now();
    let _timed = Timed(started, backend);
    let Err(error) = transact(conn, batch).await else {
        batch.drain(..).for_each(|job| job.finish(Ok(())));
        return true;
    };
    if batch.len() == 1 {
        if let Some(job) = batch.pop() {
            job.finish(Err(error));
        }
    } else {
        tracing::warn!(error = %error, jobs = batch.len(), "batch failed; retrying its writes one by one");
        for mut job in batch.drain(..) {
            job.reset();
            let result = transact(conn, std::slice::from_mut(&mut job)).await;
            job.finish(result);
        }
    }
    false
}

/// Records a group commit's duration, however it ends (its retries one by one
/// included): when the batch's jobs have been answered.
struct Timed(std::time::Instant, &'static str);

impl Drop for Timed {
    fn drop(&mut self) {
        metrics::histogram!(meters::STORE_COMMIT_DURATION, "backend" => self.1)
            .record(self.0.elapsed());
    }
}

/// Applies the jobs in one transaction, rolled back unless all of it commits.
pub(crate) async fn transact<C: Tx>(conn: &mut C, jobs: &mut [Job]) -> Result<(), StoreError> {
    conn.begin().await?;
    let mut done = super::batch::apply(conn, jobs).await;
    if done.is_ok() {
        done = conn.commit().await;
    }
    if done.is_err() {
        // After a failed COMMIT there may be nothing left to roll back.
        let _ = conn.rollback().await;
    }
    done
}
