//! The only code that knows SQL. The store offers the actors typed operations:
//! writes go through a group-commit writer (Postgres: the async [`writer`];
//! SQLite: the thread of [`sqlite_writer`]), reads through a separate pool, so
//! reads never wait behind writes. The backend is chosen by the `DATABASE_URL`
//! scheme: `sqlite` (the default, one process) or `postgres` (production, and
//! several instances on one database). Each is one module; the statements they
//! share are in `sql`.

mod postgres;
mod rows;
mod sql;
mod sqlite;
mod sqlite_writer;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::domain::{
    IdempotencyKey, Money, Order, OrderEvent, OrderId, OrderStep, Payment, PaymentId, Product,
    ProductId, Quantity, ShopperId, Stock,
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
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> StoreOptions {
        StoreOptions {
            url: url.into(),
            read_connections: 4,
            write_connections: 4,
            max_batch: 512,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            sqlite_synchronous: SqliteSynchronous::Normal,
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
        Ok(Store { backend })
    }

    /// Whether other processes may be using the same database (Postgres). Then
    /// nothing this process remembers about shared rows is current: reads go to
    /// the database, and sagas are claimed by lease.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    // Inventory.

    pub async fn catalog(&self) -> Result<Vec<StockedProduct>, StoreError> {
        on_backend!(self, db => db.catalog().await)
    }

    /// Up to `limit` products after `after`, in product id order.
    pub async fn catalog_page(
        &self,
        after: Option<&ProductId>,
        limit: u32,
    ) -> Result<Vec<StockedProduct>, StoreError> {
        on_backend!(self, db => db.catalog_page(after, limit).await)
    }

    pub async fn product(
        &self,
        product_id: &ProductId,
    ) -> Result<Option<StockedProduct>, StoreError> {
        on_backend!(self, db => db.product(product_id).await)
    }

    pub async fn upsert_product(&self, product: Product) -> Result<StockedProduct, StoreError> {
        on_backend!(self, db => db.write(UpsertProduct(product)).await)
    }

    pub async fn reserve(&self, reserve: Reserve) -> Result<ReserveOutcome, StoreError> {
        on_backend!(self, db => db.write(reserve).await)
    }

    /// Marks the order's reservation as taken for good. `false` when there was no
    /// open reservation (already committed or released): a no-op.
    pub async fn commit_reservation(&self, order_id: OrderId) -> Result<bool, StoreError> {
        let op = CommitReservation {
            order_id,
            at: Utc::now(),
        };
        on_backend!(self, db => db.write(op).await)
    }

    /// Gives the order's reserved stock back. `None` when there was no open
    /// reservation (already released or committed): a no-op.
    pub async fn release_reservation(
        &self,
        order_id: OrderId,
    ) -> Result<Option<StockLevel>, StoreError> {
        let op = ReleaseReservation {
            order_id,
            at: Utc::now(),
        };
        on_backend!(self, db => db.write(op).await)
    }

    // Orders.

    pub async fn create_order(&self, order: NewOrder) -> Result<CreateOrderOutcome, StoreError> {
        on_backend!(self, db => db.write(order).await)
    }

    /// Moves an order to `step` from the step before it (see
    /// [`OrderStep::previous`]) and records the event, which it answers. `None`,
    /// writing nothing, when the order is anywhere else: already at `step`, past
    /// it, or moved another way.
    pub async fn advance_order(
        &self,
        transition: OrderTransition,
    ) -> Result<Option<OrderEvent>, StoreError> {
        on_backend!(self, db => db.write(transition).await)
    }

    /// The order's recorded events after `after_seq` (0 for all), in order.
    pub async fn order_events(
        &self,
        order_id: OrderId,
        after_seq: u32,
    ) -> Result<Vec<OrderEvent>, StoreError> {
        on_backend!(self, db => db.order_events(order_id, after_seq).await)
    }

    /// The shopper's most recent orders, newest first.
    pub async fn shopper_orders(
        &self,
        shopper: ShopperId,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        on_backend!(self, db => db.shopper_orders(shopper, limit).await)
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

    // Payments.

    /// Records a payment, unless the order already has one: then that one is
    /// returned and nothing is written.
    pub async fn record_payment(&self, payment: Payment) -> Result<Payment, StoreError> {
        on_backend!(self, db => db.write(RecordPayment(payment)).await)
    }

    pub async fn payment(&self, payment_id: PaymentId) -> Result<Option<Payment>, StoreError> {
        on_backend!(self, db => db.payment(payment_id).await)
    }

    pub async fn payments_for_order(&self, order_id: OrderId) -> Result<Vec<Payment>, StoreError> {
        on_backend!(self, db => db.payments_for_order(order_id).await)
    }
}

/// A product with the version of its row: the catalog snapshot keeps the newest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockedProduct {
    pub product: Product,
    pub version: i64,
}

/// A product's stock after a change, with the row version that change produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: ProductId,
    pub stock: Stock,
    pub version: i64,
}

/// Reserve `quantity` of a product for an order.
#[derive(Debug, Clone)]
pub struct Reserve {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub quantity: Quantity,
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
        match raw {
            "RESERVED" => Ok(ReservationState::Reserved),
            "COMMITTED" => Ok(ReservationState::Committed),
            "RELEASED" => Ok(ReservationState::Released),
            "REFUSED" => Ok(ReservationState::Refused),
            other => Err(StoreError::Corrupt(format!("reservation state {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Stock was taken now.
    Reserved(StockLevel),
    /// The order asked before (its saga is being driven again): nothing changed,
    /// and this is what was decided then, or has become of it since.
    AlreadyDecided(ReservationState),
    /// Not enough stock: nothing is taken, and the refusal is recorded, so that
    /// the order stays refused even if stock comes back before another run of its
    /// saga asks again.
    Insufficient {
        available: Stock,
    },
    UnknownProduct,
}

pub(crate) struct UpsertProduct(Product);

pub(crate) struct CommitReservation {
    order_id: OrderId,
    at: DateTime<Utc>,
}

pub(crate) struct ReleaseReservation {
    order_id: OrderId,
    at: DateTime<Utc>,
}

/// A new order, to be stored with its first event.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub total_amount: Money,
    pub idempotency_key: Option<IdempotencyKey>,
    /// The browser that placed it, for the storefront's "my orders".
    pub shopper_id: Option<ShopperId>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOrderOutcome {
    Created(Order),
    /// An order with the same idempotency key exists; nothing was written.
    Existing(Order),
}

#[derive(Debug, Clone)]
pub struct OrderTransition {
    pub order_id: OrderId,
    pub step: OrderStep,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

pub(crate) struct RecordPayment(Payment);

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}
