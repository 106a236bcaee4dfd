//! The Postgres backend, for production and for several instances on one
//! database. The statements are the shared ones (`sql` for reads, `batch` for
//! writes); what this module adds is what several processes need from the
//! database:
//!
//! - Atomicity across processes comes from the statements themselves (the
//!   conditional stock update, the unique order id of a reservation and a payment,
//!   the unique idempotency key), as it does on SQLite; a batch that loses a race
//!   on one of them is rolled back and its writes retried one by one. A batch
//!   locks the products it touches in key order, so batches committing at once
//!   (here or in another instance) cannot deadlock.
//! - Saga ownership is a lease: an order belongs to the instance that placed it
//!   for `lease` from its creation, renewed at every claim round (half a lease)
//!   for as long as its saga runs there, retrying or not. Once a lease runs out
//!   (the instance died, or stalled), whoever claims the order first takes it
//!   over (`FOR UPDATE SKIP LOCKED`, so two claimers never take the same order).
//! - Every batch announces what it changed (order events, products and their
//!   stock) with one `NOTIFY` statement in its transaction, so once it commits the
//!   other instances' watchers hear of the events and their catalog snapshots
//!   take the changes. An instance that loses the feed reads the catalog again
//!   when it is back.
//! - Migrations run under sqlx's advisory lock, so instances may start together.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, Postgres};
use tokio::sync::broadcast;

use futures_util::future::BoxFuture;

use super::dialect::{self, Dialect};
use super::rows::order_columns;
use super::writer::{self, FromCells, Job, Tx, Writer};
use super::{Changes, ProductChange, ProductFeed, StoreError, StoreOptions};
use crate::domain::{Order, OrderEvent, OrderId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel changes are announced on.
const CHANNEL: &str = "minimart_changes";

/// Most orders one claim takes, so one sweep stays one modest transaction.
const CLAIM_LIMIT: i64 = 500;

/// The write connections' planner: a batch's statements join its rows (a JSON
/// array the planner takes for 100 rows, whatever its size) to tables by their
/// keys. Looking each one up is always right; a hash or merge join over a scan
/// of the whole table never is, and the planner picks those once a table has
/// grown. Nor a sequential scan: with few reservations still RESERVED, giving
/// some back or taking them for good scanned the whole table (the statistics
/// said the scan would find few rows), thousands of times a second, slower as
/// the table grew. The same statements' plan, made once per connection and
/// often on empty tables, then scanned the whole primary key instead, until
/// the table's first automatic analysis made it plan again: the reservations
/// still RESERVED have an index of their own for that (migration 0009), which
/// such a plan reads instead (with the entries of those taken since the last
/// vacuum: hundreds of blocks, not the table).
pub(super) const JOINS: [(&str, &str); 3] = [
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    ("enable_seqscan", "off"),
];

/// How long after its last batch a committer still uses its connection
/// without the pool checking it again.
pub(super) const KEEP_WHILE_BUSY: Duration = Duration::from_millis(250);

/// A `NOTIFY` payload must stay under 8,000 bytes: a batch's changes are split
/// into payloads of at most this many.
const PAYLOAD_BYTES: usize = 7_000;

#[derive(Clone)]
pub(super) struct PgStore {
    pub(super) writer: Writer,
    /// Reads, and the claim rounds (a short transaction every half lease): the
    /// committers keep the write connections.
    pub(super) reads: PgPool,
    /// The one connection that LISTENs, apart from the read pool it would
    /// otherwise hold a connection of for good.
    listens: PgPool,
    lease: Duration,
    /// Where the changes other processes announce go.
    sinks: Arc<Sinks>,
    /// The runtime the store was opened on, which runs the listener too: it lives
    /// as long as the store, not as long as whoever asked for changes.
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Sinks {
    events: OnceLock<broadcast::Sender<OrderEvent>>,
    products: OnceLock<ProductFeed>,
    listening: OnceLock<()>,
}

impl PgStore {
    pub(super) async fn open(options: &StoreOptions) -> Result<PgStore, StoreError> {
        let statement_timeout = options.statement_timeout.as_millis().to_string();
        let connect = PgConnectOptions::from_str(&options.url)?
            .application_name("minimart")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let writes = PgPoolOptions::new()
            .max_connections(options.write_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone().options(JOINS))
            .await?;
        MIGRATOR.run(&writes).await?;
        let reads = PgPoolOptions::new()
            .max_connections(options.read_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let listens = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(connect);
        let (writer, queue) = Writer::channel(options.max_batch);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..options.write_connections.max(1) {
            let (pool, queue) = (writes.clone(), Arc::clone(&queue));
            tokio::spawn(commit_batches(pool, queue, options.max_batch.max(1)));
        }
        Ok(PgStore {
            writer,
            reads,
            listens,
            lease: options.lease,
            sinks: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub(super) fn lease(&self) -> Duration {
        self.lease
    }

    /// Renews the lease of the orders whose saga runs here, then takes the
    /// pending orders whose lease has run out (their instance died, or stalled),
    /// leasing them to this instance for another term. The database's clock
    /// decides, so instances with skewed clocks agree.
    pub(super) async fn claim_unfinished_orders(
        &self,
        running: &[OrderId],
    ) -> Result<Vec<Order>, StoreError> {
        let running: Vec<uuid::Uuid> = running.iter().map(OrderId::as_uuid).collect();
        let lease = self.lease.as_secs_f64();
        let mut tx = self.reads.begin().await?;
        // SKIP LOCKED: renewing waits for no one, so it cannot deadlock with
        // another instance's writes to the same orders; an order skipped now is
        // renewed at the next round, well before its lease runs out.
        if !running.is_empty() {
            sqlx::query(
                "UPDATE shop_order SET lease_until = now() + make_interval(secs => $1) \
                 WHERE order_id IN ( \
                     SELECT order_id FROM shop_order \
                     WHERE order_id = ANY($2) AND status = 'PENDING' \
                     FOR UPDATE SKIP LOCKED)",
            )
            .bind(lease)
            .bind(&running)
            .execute(&mut *tx)
            .await?;
        }
        // SKIP LOCKED: an order another instance is claiming right now is its.
        let rows = sqlx::query(concat!(
            "UPDATE shop_order SET lease_until = now() + make_interval(secs => $1) \
             WHERE order_id IN ( \
                 SELECT order_id FROM shop_order \
                 WHERE status = 'PENDING' \
                   AND COALESCE(lease_until, created_at + make_interval(secs => $1)) < now() \
                   AND order_id <> ALL($3) \
                 ORDER BY order_id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            order_columns!()
        ))
        .bind(lease)
        .bind(CLAIM_LIMIT)
        .bind(&running)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(Order::from_cells).collect()
    }

    /// Feeds the order events that any instance commits into `events`, for as
    /// long as the process lives.
    pub(super) fn forward_events(&self, events: broadcast::Sender<OrderEvent>) {
        let _ = self.sinks.events.set(events);
        self.listen();
    }

    /// Feeds the product changes that any instance commits into `feed`.
    pub(super) fn feed_products(&self, feed: ProductFeed) {
        let _ = self.sinks.products.set(feed);
        self.listen();
    }

    /// Starts the listener, once. A lost connection is re-established; what was
    /// announced meanwhile is not replayed, but a watcher that reconnects reads
    /// it from the outbox, and the catalog is read again whole.
    fn listen(&self) {
        if self.sinks.listening.set(()).is_err() {
            return;
        }
        let (pool, sinks, store) = (self.listens.clone(), Arc::clone(&self.sinks), self.clone());
        self.runtime.spawn(async move {
            loop {
                if let Err(error) = listen(&pool, &sinks, &store).await {
                    tracing::warn!(error = %error, "lost the change feed; listening again shortly");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// A committer: takes turns with the others at the queue, taking whatever has
/// queued, and lets go of it before committing, so the next batch gathers
/// meanwhile. Ends once every store handle is gone and the queue is drained.
///
/// It keeps its connection while batches follow each other: going back to the
/// pool and out again costs two round trips (sqlx checks the connection both
/// ways), as many as a batch's smallest statements. After a pause (the
/// database may have restarted meanwhile) or a batch that failed anywhere, the
/// connection goes back to the pool, which drops it if it broke, and the next
/// batch takes one that the pool has checked.
async fn commit_batches(
    pool: PgPool,
    queue: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut held: Option<(PoolConnection<Postgres>, Instant)> = None;
    while queue.lock().await.recv_many(&mut batch, max_batch).await > 0 {
        let conn = match held.take() {
            Some((conn, used)) if used.elapsed() < KEEP_WHILE_BUSY => Ok(conn),
            paused => {
                // Back to the pool first: it may be the pool's only one.
                drop(paused);
                pool.acquire().await
            }
        };
        match conn {
            Ok(mut conn) => {
                if writer::commit(&mut *conn, &mut batch).await {
                    held = Some((conn, Instant::now()));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                writer::fail(&mut batch, || StoreError::Unreachable(Arc::clone(&error)));
            }
        }
    }
}

impl Tx for PgConnection {
    const DIALECT: Dialect = Dialect::Postgres;

    fn begin(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(run(self, "BEGIN"))
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(run(self, "COMMIT"))
    }

    fn rollback(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(run(self, "ROLLBACK"))
    }

    fn execute<'a, I: Serialize + Sync>(
        &'a mut self,
        template: &'static str,
        rows: &'a [I],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (sql, rows) = dialect::postgres(template, rows)?;
            sqlx::query(sql).bind(rows).execute(&mut *self).await?;
            Ok(())
        })
    }

    fn fetch<'a, R: FromCells + Send + 'static, I: Serialize + Sync>(
        &'a mut self,
        template: &'static str,
        rows: &'a [I],
    ) -> BoxFuture<'a, Result<Vec<R>, StoreError>> {
        Box::pin(async move {
            let (sql, rows) = dialect::postgres(template, rows)?;
            let rows = sqlx::query(sql).bind(rows).fetch_all(&mut *self).await?;
            rows.iter().map(R::from_cells).collect()
        })
    }

    fn announce<'a>(&'a mut self, changes: &'a Changes) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { announce(self, changes).await })
    }
}

/// Runs a statement that takes no parameters and answers no rows.
async fn run(conn: &mut PgConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(conn).await?;
    Ok(())
}

async fn listen(pool: &PgPool, sinks: &Sinks, store: &PgStore) -> Result<(), StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection ends this round (`Ok(None)` below), so that the next one
    // reads the catalog again: left to itself, the listener would reconnect
    // quietly, and what changed meanwhile would never reach the snapshot.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    // Whatever changed while nobody listened is in the catalog as it is now.
    if let Some(feed) = sinks.products.get() {
        feed(ProductChange::Everything(store.catalog().await?));
    }
    while let Some(notification) = listener.try_recv().await? {
        let notes = match serde_json::from_str::<Vec<serde_json::Value>>(notification.payload()) {
            Ok(notes) => notes,
            Err(error) => {
                tracing::warn!(error = %error, "a change announcement could not be read");
                continue;
            }
        };
        // This instance's own events arrive twice (from its saga and from here),
        // which watchers skip by sequence number; its own product changes are no
        // newer than its snapshot, which keeps the newest version. Nobody
        // listening is fine. A note that does not parse is skipped alone.
        for note in notes {
            match serde_json::from_value::<Note>(note) {
                Ok(Note::Event(event)) => {
                    if let Some(events) = sinks.events.get() {
                        let _ = events.send(event);
                    }
                }
                Ok(Note::Product(change)) => {
                    if let Some(feed) = sinks.products.get() {
                        feed(change);
                    }
                }
                Err(error) => tracing::warn!(error = %error, "a change could not be read"),
            }
        }
    }
    Err(StoreError::Unreachable(std::sync::Arc::new(
        sqlx::Error::PoolClosed,
    )))
}

/// One change as it travels in a `NOTIFY` payload (a JSON array of them). The
/// domain's own parsing checks what arrives.
#[derive(Serialize, Deserialize)]
enum Note {
    Event(OrderEvent),
    Product(ProductChange),
}

super::sql::shared_reads!(store: PgStore);

/// Tells the other instances what the batch changed, in one statement however
/// many payloads it takes. `NOTIFY` is transactional: it is delivered when the
/// batch commits, and never if it rolls back.
async fn announce(conn: &mut PgConnection, changes: &Changes) -> Result<(), StoreError> {
    let events = changes.events.iter().cloned().map(Note::Event);
    let notes = events.chain(changes.products.iter().cloned().map(Note::Product));
    let mut payloads: Vec<String> = Vec::new();
    let mut payload = String::new();
    for note in notes {
        let note = serde_json::to_string(&note).map_err(|e| super::corrupt("announcement", e))?;
        if !payload.is_empty() && payload.len() + note.len() + 2 > PAYLOAD_BYTES {
            payload.push(']');
            payloads.push(std::mem::take(&mut payload));
        }
        payload.push(if payload.is_empty() { '[' } else { ',' });
        payload.push_str(&note);
    }
    if payload.is_empty() {
        return Ok(());
    }
    payload.push(']');
    payloads.push(payload);
    sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind(CHANNEL)
        .bind(&payloads)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
