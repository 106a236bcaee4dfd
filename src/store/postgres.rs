//! The Postgres backend, for production and for several instances on one
//! database. The statements are the shared ones (`sql`); what this module adds is
//! what several processes need from the database:
//!
//! - Atomicity across processes comes from the statements themselves (the
//!   conditional stock update, the unique order id of a reservation and a payment,
//!   the unique idempotency key), as it does on SQLite; a batch that loses a race
//!   on one of them is rolled back and its writes retried one by one.
//! - Saga ownership is a lease: an order belongs to the instance that placed it
//!   for `lease` from its creation, renewed at every claim round (half a lease)
//!   for as long as its saga runs there, retrying or not. Once a lease runs out
//!   (the instance died, or stalled), whoever claims the order first takes it
//!   over (`FOR UPDATE SKIP LOCKED`, so two claimers never take the same order).
//! - Every order event is also announced with `NOTIFY` in the transaction that
//!   records it, so the other instances' watchers hear of it once it commits.
//! - Migrations run under sqlx's advisory lock, so instances may start together.

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::rows::{OrderRow, convert};
use super::writer::{WriteOp, Writer};
use super::{StoreError, StoreOptions};
use crate::domain::{Order, OrderEvent, OrderId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel order events are announced on.
const EVENT_CHANNEL: &str = "minimart_order_event";

/// Most orders one claim takes, so one sweep stays one modest transaction.
const CLAIM_LIMIT: i64 = 500;

#[derive(Clone)]
pub(super) struct PgStore {
    writer: Writer<Postgres>,
    reads: PgPool,
    /// The one connection that LISTENs, apart from the read pool it would
    /// otherwise hold a connection of for good.
    listens: PgPool,
    lease: Duration,
    /// The runtime the store was opened on, which runs the event listener too:
    /// it lives as long as the store, not as long as whoever asked for events.
    runtime: tokio::runtime::Handle,
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
            .connect_with(connect.clone())
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
        Ok(PgStore {
            writer: Writer::spawn(
                writes,
                options.max_batch,
                options.write_connections as usize,
            ),
            reads,
            listens,
            lease: options.lease,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub(super) async fn write<W: WriteOp<Postgres>>(&self, op: W) -> Result<W::Output, StoreError> {
        self.writer.write(op).await
    }

    pub(super) fn lease(&self) -> Duration {
        self.lease
    }

    /// Renews the lease of the orders whose saga runs here, then takes the
    /// pending orders whose lease has run out (their instance died, or stalled),
    /// leasing them to this instance for another term.
    pub(super) async fn claim_unfinished_orders(
        &self,
        running: &[OrderId],
    ) -> Result<Vec<Order>, StoreError> {
        self.write(ClaimStalled {
            lease: self.lease,
            running: running.iter().map(|order_id| order_id.as_uuid()).collect(),
        })
        .await
    }

    /// Feeds the events that any instance commits into `events`, for as long as
    /// the process lives. A lost connection is re-established; what was announced
    /// meanwhile is not replayed, but a watcher that reconnects reads it from the
    /// outbox.
    pub(super) fn forward_events(&self, events: broadcast::Sender<OrderEvent>) {
        let pool = self.listens.clone();
        self.runtime.spawn(async move {
            loop {
                if let Err(error) = listen(&pool, &events).await {
                    tracing::warn!(error = %error, "lost the order event feed; listening again shortly");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

async fn listen(pool: &PgPool, events: &broadcast::Sender<OrderEvent>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(EVENT_CHANNEL).await?;
    loop {
        let notification = listener.recv().await?;
        match serde_json::from_str::<Announcement>(notification.payload()) {
            // Nobody watching is fine; and this instance's own events arrive twice
            // (from its saga and from here), which watchers skip by sequence number.
            Ok(announcement) => match OrderEvent::try_from(announcement) {
                Ok(event) => {
                    let _ = events.send(event);
                }
                Err(error) => tracing::warn!(error = %error, "an order event could not be read"),
            },
            Err(error) => tracing::warn!(error = %error, "an order event could not be read"),
        }
    }
}

/// An order event as it travels in a `NOTIFY` payload.
#[derive(Serialize, Deserialize)]
struct Announcement {
    order_id: uuid::Uuid,
    seq: u32,
    step: String,
    reason: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
}

impl TryFrom<Announcement> for OrderEvent {
    type Error = StoreError;
    fn try_from(announcement: Announcement) -> Result<Self, StoreError> {
        Ok(OrderEvent {
            order_id: OrderId::from_uuid(announcement.order_id),
            seq: announcement.seq,
            step: announcement
                .step
                .parse()
                .map_err(|e| super::corrupt("step", e))?,
            reason: announcement.reason,
            at: announcement.at,
        })
    }
}

super::sql::shared_reads!(store: PgStore);
super::sql::shared_writes!(db: sqlx::Postgres, conn: sqlx::postgres::PgConnection);

/// Tells the other instances about the event. `NOTIFY` is transactional: it is
/// delivered when the transaction that records the event commits, and never if it
/// rolls back.
async fn announce_event(conn: &mut PgConnection, event: &OrderEvent) -> Result<(), StoreError> {
    let payload = serde_json::to_string(&Announcement {
        order_id: event.order_id.as_uuid(),
        seq: event.seq,
        step: event.step.as_str().to_owned(),
        reason: event.reason.clone(),
        at: event.at,
    })
    .map_err(|e| super::corrupt("order event", e))?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(EVENT_CHANNEL)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Renew the lease of the orders whose saga runs here, and lease the pending
/// orders whose lease ran out to this instance.
struct ClaimStalled {
    lease: Duration,
    running: Vec<uuid::Uuid>,
}

impl WriteOp<Postgres> for ClaimStalled {
    type Output = Vec<Order>;

    fn apply<'c>(
        &'c self,
        conn: &'c mut PgConnection,
    ) -> BoxFuture<'c, Result<Vec<Order>, StoreError>> {
        Box::pin(async move {
            // The database's clock decides, so instances with skewed clocks agree.
            // SKIP LOCKED: renewing waits for no one, so it cannot deadlock with
            // another instance's writes to the same orders; an order skipped now
            // is renewed at the next round, well before its lease runs out.
            if !self.running.is_empty() {
                sqlx::query(
                    "UPDATE shop_order SET lease_until = now() + make_interval(secs => $1) \
                     WHERE order_id IN ( \
                         SELECT order_id FROM shop_order \
                         WHERE order_id = ANY($2) AND status = 'PENDING' \
                         FOR UPDATE SKIP LOCKED)",
                )
                .bind(self.lease.as_secs_f64())
                .bind(&self.running)
                .execute(&mut *conn)
                .await?;
            }
            // SKIP LOCKED: an order another instance is claiming right now is its.
            let rows: Vec<OrderRow> = sqlx::query_as(
                "UPDATE shop_order SET lease_until = now() + make_interval(secs => $1) \
                 WHERE order_id IN ( \
                     SELECT order_id FROM shop_order \
                     WHERE status = 'PENDING' \
                       AND COALESCE(lease_until, created_at + make_interval(secs => $1)) < now() \
                       AND order_id <> ALL($3) \
                     ORDER BY order_id LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING order_id, product_id, quantity, total_amount, step, reason, created_at, updated_at",
            )
            .bind(self.lease.as_secs_f64())
            .bind(CLAIM_LIMIT)
            .bind(&self.running)
            .fetch_all(&mut *conn)
            .await?;
            convert(rows)
        })
    }
}
