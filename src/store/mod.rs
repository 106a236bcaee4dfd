//! The only code that knows SQL. The store offers the actors typed operations:
//! writes go through one group-commit writer ([`writer`]) that applies a batch
//! set-based ([`batch`]), reads through a separate pool, so reads never wait
//! behind writes. The backend is chosen by the `DATABASE_URL` scheme: `sqlite`
//! (the default, one process) or `postgres` (production, and several instances
//! on one database). Each is one module; every statement is written once, and
//! [`dialect`] renders it for the backend.

mod batch;
mod dialect;
mod postgres;
mod rows;
mod sql;
mod sqlite;
mod writer;

#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{
    Item, Money, Order, OrderEvent, OrderId, OrderLine, OrderStatus, OrderStep, OwnedKey, Payment,
    PaymentId, PaymentMethod, Product, ProductId, Quantity, ShopperId, Stock,
};

pub use sqlite::SqliteSynchronous;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database is unreachable")]
    Unreachable(#[source] std::sync::Arc<sqlx::Error>),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("the database writer could not start")]
    WriterStart(#[source] std::io::Error),
    #[error("the write waited in the queue past its deadline and was not applied")]
    Overdue,
    #[error("a write was committed without producing its result")]
    NotApplied,
    #[error("unsupported DATABASE_URL {0:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// Connections in the read pool.
    pub read_connections: u32,
    /// Postgres: batches committing at once, each on its own connection (SQLite
    /// has one writer whatever this says).
    pub write_connections: u32,
    /// Most writes one commit may carry.
    pub max_batch: usize,
    /// How long a read waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// Postgres: the longest a statement may run before the database cancels it.
    pub statement_timeout: Duration,
    /// Postgres: how long an instance owns the sagas of the orders it placed or
    /// claimed before another live instance may take them over.
    pub lease: Duration,
    pub sqlite_synchronous: SqliteSynchronous,
    /// How long an order's idempotency key is kept (see [`Store::prune`]).
    pub idempotency_ttl: Duration,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> StoreOptions {
        StoreOptions {
            url: url.into(),
            read_connections: 4,
            write_connections: 1,
            max_batch: 512,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            sqlite_synchronous: SqliteSynchronous::Normal,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// A handle to the database; cheap to clone, shared by the actors.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Runs the same code against whichever backend the store has.
macro_rules! on_backend {
    ($store:expr, $backend:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($backend) => $body,
            Backend::Postgres($backend) => $body,
        }
    };
}

impl Store {
    /// Opens (creating if needed) and migrates the database named by the options.
    pub async fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        let url = options.url.as_str();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::PgStore::open(options).await?)
        } else {
            Backend::Sqlite(sqlite::SqliteStore::open(options).await?)
        };
        let store = Store { backend };
        let writer = on_backend!(store, db => db.writer.downgrade());
        tokio::spawn(housekeeping(writer, options.idempotency_ttl));
        Ok(store)
    }

    /// Whether other processes may be using the same database (Postgres). Then
    /// sagas are claimed by lease, and what this process remembers of an order
    /// may be behind another process's changes.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    async fn write<W: writer::Write>(&self, op: W) -> Result<W::Output, StoreError> {
        on_backend!(self, db => db.writer.write(op).await)
    }

    // Inventory.

    pub async fn catalog(&self) -> Result<Vec<StockedProduct>, StoreError> {
        on_backend!(self, db => db.catalog().await)
    }

    pub async fn product(
        &self,
        product_id: &ProductId,
    ) -> Result<Option<StockedProduct>, StoreError> {
        on_backend!(self, db => db.product(product_id).await)
    }

    pub async fn upsert_product(&self, product: Product) -> Result<StockedProduct, StoreError> {
        self.write(product).await
    }

    /// Decides whether the order gets its stock (once per order: asked again, it
    /// answers the first decision) and, with `advance_order`, moves the order out
    /// of PLACED accordingly in the same transaction.
    pub async fn reserve(&self, reserve: Reserve) -> Result<Reserved, StoreError> {
        self.write(reserve).await
    }

    /// Takes the order's reserved stock for good (paid) or gives it back, and
    /// moves the order as `then` says in the same transaction. Taking or giving
    /// back is a no-op when there is no open reservation.
    pub async fn settle(&self, settle: Settle) -> Result<Settled, StoreError> {
        self.write(settle).await
    }

    /// Sends the product changes that other processes commit to `feed` (Postgres),
    /// so that this process's catalog snapshot keeps up with them; with SQLite
    /// there is no other process.
    pub fn feed_products(&self, feed: ProductFeed) {
        if let Backend::Postgres(db) = &self.backend {
            db.feed_products(feed);
        }
    }

    // Orders.

    pub async fn create_order(&self, order: NewOrder) -> Result<CreateOrderOutcome, StoreError> {
        self.write(order).await
    }

    /// As [`Store::create_order`], but nothing is written, and the answer is
    /// [`StoreError::Overdue`], when the order is still queued at `not_after`.
    pub async fn create_order_by(
        &self,
        order: NewOrder,
        not_after: std::time::Instant,
    ) -> Result<CreateOrderOutcome, StoreError> {
        on_backend!(self, db => db.writer.write_by(order, Some(not_after)).await)
    }

    /// Moves an order to `step` from the step the saga's arrow into it leaves
    /// ([`OrderStep::reached_from`]) and records the event, which it answers. `None`,
    /// writing nothing, when the order is anywhere else: already at `step`, past
    /// it, or moved another way.
    pub async fn advance_order(
        &self,
        transition: OrderTransition,
    ) -> Result<Option<OrderEvent>, StoreError> {
        self.write(transition).await
    }

    /// The order's recorded events after `after_seq` (0 for all), in order.
    pub async fn order_events(
        &self,
        order_id: OrderId,
        after_seq: u32,
    ) -> Result<Vec<OrderEvent>, StoreError> {
        on_backend!(self, db => db.order_events(order_id, after_seq).await)
    }

    /// The most recent orders (ids sort by time), newest first, of one status
    /// or of any.
    pub async fn recent_orders(
        &self,
        status: Option<OrderStatus>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let status = status.map(OrderStatus::as_str);
        on_backend!(self, db => db.recent_orders(status, limit).await)
    }

    /// The shopper's most recent orders, newest first.
    pub async fn shopper_orders(
        &self,
        shopper: ShopperId,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        on_backend!(self, db => db.shopper_orders(shopper, limit).await)
    }

    /// The order placed with this idempotency key, while the key is kept.
    pub async fn order_by_key(&self, key: &OwnedKey) -> Result<Option<Order>, StoreError> {
        on_backend!(self, db => db.order_by_key(key).await)
    }

    pub async fn order(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
        on_backend!(self, db => db.order(order_id).await)
    }

    /// Every order whose saga has not reached a terminal status, oldest first.
    pub async fn unfinished_orders(&self) -> Result<Vec<Order>, StoreError> {
        on_backend!(self, db => db.unfinished_orders().await)
    }

    /// The unfinished orders whose sagas this process should drive now, apart
    /// from `running`, whose sagas run here already. SQLite: every one, since one
    /// process owns the file (called at start). Postgres: the ones whose lease ran
    /// out, now leased to this process, after renewing the lease of `running`;
    /// another live instance's orders are left to it.
    pub async fn claim_unfinished_orders(
        &self,
        running: &[OrderId],
    ) -> Result<Vec<Order>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let mut unfinished = db.unfinished_orders().await?;
                unfinished.retain(|order| !running.contains(&order.order_id));
                Ok(unfinished)
            }
            Backend::Postgres(db) => db.claim_unfinished_orders(running).await,
        }
    }

    /// How often to claim stalled sagas: Postgres, where another instance may die
    /// with orders in flight, at half the lease; SQLite never (start-up resumes).
    pub fn claim_interval(&self) -> Option<Duration> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(db) => Some(db.lease() / 2),
        }
    }

    /// Sends every order event that another process commits into `events` too
    /// (Postgres); with SQLite there is no other process.
    pub fn forward_events(&self, events: broadcast::Sender<OrderEvent>) {
        if let Backend::Postgres(db) = &self.backend {
            db.forward_events(events);
        }
    }

    // Carts.

    /// The shopper's cart: a line per product, in the order they were added.
    pub async fn cart(&self, shopper: ShopperId) -> Result<Vec<Item>, StoreError> {
        on_backend!(self, db => db.cart(shopper).await)
    }

    /// The units in the shopper's cart, and whether an order of theirs is
    /// still undecided.
    pub async fn shopper_summary(&self, shopper: ShopperId) -> Result<(i64, bool), StoreError> {
        on_backend!(self, db => db.shopper_summary(shopper).await)
    }

    pub async fn change_cart(&self, change: CartChange) -> Result<(), StoreError> {
        self.write(change).await
    }

    // Payments.

    /// Records a payment, unless the order already has one: then that one is
    /// returned and nothing is written.
    pub async fn record_payment(&self, payment: Payment) -> Result<Payment, StoreError> {
        self.write(payment).await
    }

    pub async fn payment(&self, payment_id: PaymentId) -> Result<Option<Payment>, StoreError> {
        on_backend!(self, db => db.payment(payment_id).await)
    }

    pub async fn payments_for_order(&self, order_id: OrderId) -> Result<Vec<Payment>, StoreError> {
        on_backend!(self, db => db.payments_for_order(order_id).await)
    }

    /// Marks a pending order stalled (keeping the first time it was), with its
    /// saga's last error; false when the order is not pending. Its next move
    /// clears the mark.
    pub async fn stall(&self, stall: Stall) -> Result<bool, StoreError> {
        self.write(stall).await
    }

    /// The orders whose sagas are stalled, newest first.
    pub async fn stalled_orders(&self, limit: u32) -> Result<Vec<StalledOrder>, StoreError> {
        on_backend!(self, db => db.stalled_orders(limit).await)
    }

    /// The read pool's connections: `(active, idle)`.
    pub fn read_pool_connections(&self) -> (u32, u32) {
        let (size, idle) = on_backend!(self, db => (db.reads.size(), db.reads.num_idle()));
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        (size - idle, idle)
    }

    /// Whether the database answers (a read on the read pool).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, db => db.ping().await)
    }

    // Admin sessions and shared secrets.

    pub async fn open_session(&self, session: AdminSessionRow) -> Result<(), StoreError> {
        self.write(session).await
    }

    pub async fn admin_session(
        &self,
        session_id: Uuid,
    ) -> Result<Option<AdminSessionRow>, StoreError> {
        on_backend!(self, db => db.admin_session(session_id).await)
    }

    /// Ends the session; false when there was none.
    pub async fn end_session(&self, session_id: Uuid) -> Result<bool, StoreError> {
        self.write(EndSession { session_id }).await
    }

    /// The secret stored under `name`, which is `proposed` unless another
    /// instance stored one first: every instance ends up with the same.
    pub async fn shared_secret(&self, name: &str, proposed: String) -> Result<String, StoreError> {
        self.write(SharedSecret {
            name: name.to_owned(),
            value: proposed,
        })
        .await
    }

    /// Forgets the idempotency keys of the orders placed in `orders` (a range
    /// of order ids, which sort by time) and the admin sessions that expired
    /// before `sessions_expired_before` (Unix seconds).
    pub async fn prune(&self, prune: Prune) -> Result<Pruned, StoreError> {
        self.write(prune).await
    }
}

/// A saga's order marked stalled: its steps keep failing, the last with `error`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stall {
    pub order_id: OrderId,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// An order whose saga is stalled, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledOrder {
    pub order: Order,
    pub since: DateTime<Utc>,
    pub error: String,
}

/// An admin session as stored: its cookie names `session_id`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdminSessionRow {
    pub session_id: Uuid,
    /// A keyed digest of the admin token the session was opened with.
    pub token_digest: String,
    /// The token its forms carry.
    pub csrf: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EndSession {
    pub session_id: Uuid,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SharedSecret {
    pub name: String,
    pub value: String,
}

/// What housekeeping forgets; see [`Store::prune`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prune {
    /// Keys of orders with ids after this one...
    pub keys_after: Uuid,
    /// ...and before this one lose their keys.
    pub keys_before: Uuid,
    pub sessions_expired_before: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub keys: usize,
    pub sessions: usize,
}

/// Forgets, again and again, the idempotency keys older than `ttl` and the admin
/// sessions that have expired. Each pass covers the orders placed since the last
/// (order ids sort by time), so it never walks the whole table twice. Ends when
/// the store is dropped.
async fn housekeeping(writer: writer::WeakWriter, ttl: Duration) {
    let every = (ttl / 24).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut done_up_to = Uuid::nil();
    // The first pass one period after start: start-up has enough to do.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticks.tick().await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        let now = Utc::now();
        // A TTL too long to subtract keeps every key.
        let keys_before = chrono::Duration::from_std(ttl)
            .ok()
            .and_then(|ttl| now.checked_sub_signed(ttl))
            .map_or(Uuid::nil(), |cutoff| OrderId::first_at(cutoff).as_uuid());
        let prune = Prune {
            keys_after: done_up_to,
            keys_before,
            sessions_expired_before: now.timestamp(),
        };
        match writer.write(prune).await {
            Ok(pruned) => {
                done_up_to = keys_before;
                if pruned != Pruned::default() {
                    tracing::debug!(keys = pruned.keys, sessions = pruned.sessions, "pruned");
                }
            }
            Err(StoreError::WriterGone) => return,
            Err(error) => tracing::warn!(error = %error, "pruning failed; trying again later"),
        }
    }
}

/// A product with the version of its row: the catalog snapshot keeps the newest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StockedProduct {
    pub product: Product,
    pub version: i64,
}

/// A product's stock after a change, with the row version that change produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StockLevel {
    pub product_id: ProductId,
    pub stock: Stock,
    pub version: i64,
}

/// A product change that another process committed, for the catalog snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProductChange {
    /// Created or replaced.
    Product(StockedProduct),
    /// Its stock moved.
    Stock(StockLevel),
    /// Changes may have been missed (the feed was away): here is every product.
    Everything(Vec<StockedProduct>),
}

/// Where a process's catalog snapshot hears of other processes' product changes.
pub type ProductFeed = std::sync::Arc<dyn Fn(ProductChange) + Send + Sync>;

/// Reserve every line of an order, or none.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reserve {
    pub order_id: OrderId,
    pub lines: Vec<Item>,
    /// Also move the order out of PLACED by the decision (the saga's next arrow),
    /// in the same transaction.
    pub advance_order: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    /// Holds stock back for the order.
    Reserved,
    /// The order took the stock for good.
    Committed,
    /// The stock went back.
    Released,
    /// There was not enough stock: the order never holds any, whichever run of
    /// its saga asks again.
    Refused,
}

impl ReservationState {
    fn as_str(self) -> &'static str {
        match self {
            ReservationState::Reserved => "RESERVED",
            ReservationState::Committed => "COMMITTED",
            ReservationState::Released => "RELEASED",
            ReservationState::Refused => "REFUSED",
        }
    }
}

impl FromStr for ReservationState {
    type Err = StoreError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        use ReservationState::*;
        ([Reserved, Committed, Released, Refused].into_iter())
            .find(|state| state.as_str() == raw)
            .ok_or_else(|| StoreError::Corrupt(format!("reservation state {raw:?}")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Stock was taken now: each line's product as it stands after.
    Reserved(Vec<StockLevel>),
    /// The order asked before (its saga is being driven again): nothing changed,
    /// and this is what was decided then, or has become of it since.
    AlreadyDecided(ReservationState),
    /// A line lacked stock: nothing is taken, and the refusal is recorded, so
    /// that the order stays refused even if stock comes back before another run
    /// of its saga asks again.
    Insufficient {
        product_id: ProductId,
        requested: Quantity,
        available: Stock,
    },
    /// A line's product does not exist; nothing is recorded.
    UnknownProduct(ProductId),
}

/// What a reservation decided, and the order's event if it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub outcome: ReserveOutcome,
    pub moved: Option<OrderEvent>,
}

/// After the charge: take the order's reserved stock for good, or give it back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settle {
    pub order_id: OrderId,
    pub paid: bool,
    /// Where the order moves in the same transaction, if anywhere.
    pub then: Option<OrderMove>,
    pub at: DateTime<Utc>,
}

/// An order's move to `step`, from the step the saga's arrow into it leaves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrderMove {
    pub step: OrderStep,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// False when there was no open reservation: a no-op.
    pub changed: bool,
    /// The stock given back, product by product.
    pub released: Vec<StockLevel>,
    pub moved: Option<OrderEvent>,
}

/// A new order, to be stored with its first event.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_id: OrderId,
    /// At least one.
    pub lines: Vec<OrderLine>,
    pub payment_method: Option<PaymentMethod>,
    pub total_amount: Money,
    pub idempotency_key: Option<OwnedKey>,
    /// The browser that placed it, for the storefront's "my orders".
    pub shopper_id: Option<ShopperId>,
    /// Checked out from the shopper's cart: the lines it bought leave the
    /// cart in the transaction that stores the order.
    pub from_cart: bool,
    pub at: DateTime<Utc>,
}

/// A change to a shopper's cart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CartChange {
    pub shopper_id: ShopperId,
    pub product_id: ProductId,
    pub edit: CartEdit,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CartEdit {
    /// So many more units (at most [`Quantity::MAX`] in all).
    Add(Quantity),
    /// Exactly so many units.
    Set(Quantity),
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOrderOutcome {
    Created(Order),
    /// An order with the same idempotency key exists; nothing was written.
    Existing(Order),
    /// Checked out from a cart that no longer holds the order's lines (another
    /// checkout took them, or they changed): nothing was written.
    CartChanged,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OrderTransition {
    pub order_id: OrderId,
    pub step: OrderStep,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

/// What a committed batch changed, for other instances to hear of.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) events: Vec<OrderEvent>,
    pub(crate) products: Vec<ProductChange>,
}
