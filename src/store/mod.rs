//! The only code that knows SQL. The store offers the actors typed operations:
//! writes go through the group-commit [`writer`], reads through a separate pool, so
//! reads never wait behind writes. A backend is one module (`sqlite` today); a
//! second one sits beside it and implements the same operations.

mod sqlite;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    IdempotencyKey, Money, Order, OrderEvent, OrderId, OrderStep, Payment, PaymentId, Product,
    ProductId, Quantity, ShopperId, Stock,
};

pub use sqlite::SqliteSynchronous;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("a write was committed without producing its result")]
    NotApplied,
    #[error("unsupported DATABASE_URL {0:?}: expected sqlite://PATH")]
    UnsupportedUrl(String),
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// Connections in the read pool.
    pub read_connections: u32,
    /// Most writes one commit may carry.
    pub max_batch: usize,
    /// How long a read waits for a pooled connection.
    pub acquire_timeout: Duration,
    pub sqlite_synchronous: SqliteSynchronous,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> StoreOptions {
        StoreOptions {
            url: url.into(),
            read_connections: 4,
            max_batch: 512,
            acquire_timeout: Duration::from_secs(5),
            sqlite_synchronous: SqliteSynchronous::Normal,
        }
    }
}

/// A handle to the database; cheap to clone, shared by the actors.
#[derive(Clone)]
pub struct Store {
    backend: sqlite::SqliteStore,
}

impl Store {
    /// Opens (creating if needed) and migrates the database named by the options.
    pub async fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        Ok(Store {
            backend: sqlite::SqliteStore::open(options).await?,
        })
    }

    // Inventory.

    pub async fn catalog(&self) -> Result<Vec<StockedProduct>, StoreError> {
        self.backend.catalog().await
    }

    pub async fn upsert_product(&self, product: Product) -> Result<StockedProduct, StoreError> {
        self.backend.write(UpsertProduct(product)).await
    }

    pub async fn reserve(&self, reserve: Reserve) -> Result<ReserveOutcome, StoreError> {
        self.backend.write(reserve).await
    }

    /// Marks the order's reservation as taken for good. `false` when there was no
    /// open reservation (already committed or released): a no-op.
    pub async fn commit_reservation(&self, order_id: OrderId) -> Result<bool, StoreError> {
        self.backend
            .write(CommitReservation {
                order_id,
                at: Utc::now(),
            })
            .await
    }

    /// Gives the order's reserved stock back. `None` when there was no open
    /// reservation (already released or committed): a no-op.
    pub async fn release_reservation(
        &self,
        order_id: OrderId,
    ) -> Result<Option<StockLevel>, StoreError> {
        self.backend
            .write(ReleaseReservation {
                order_id,
                at: Utc::now(),
            })
            .await
    }

    // Orders.

    pub async fn create_order(&self, order: NewOrder) -> Result<CreateOrderOutcome, StoreError> {
        self.backend.write(order).await
    }

    /// Moves a pending order to `step` and records the event, which it answers.
    /// `None` when the order had already reached that step or a terminal one: a
    /// no-op.
    pub async fn advance_order(
        &self,
        transition: OrderTransition,
    ) -> Result<Option<OrderEvent>, StoreError> {
        self.backend.write(transition).await
    }

    /// The order's recorded events after `after_seq` (0 for all), in order.
    pub async fn order_events(
        &self,
        order_id: OrderId,
        after_seq: u32,
    ) -> Result<Vec<OrderEvent>, StoreError> {
        self.backend.order_events(order_id, after_seq).await
    }

    /// The shopper's most recent orders, newest first.
    pub async fn shopper_orders(
        &self,
        shopper: ShopperId,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        self.backend.shopper_orders(shopper, limit).await
    }

    pub async fn order(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
        self.backend.order(order_id).await
    }

    /// Every order whose saga has not reached a terminal status, oldest first.
    pub async fn unfinished_orders(&self) -> Result<Vec<Order>, StoreError> {
        self.backend.unfinished_orders().await
    }

    // Payments.

    /// Records a payment, unless the order already has one: then that one is
    /// returned and nothing is written.
    pub async fn record_payment(&self, payment: Payment) -> Result<Payment, StoreError> {
        self.backend.write(RecordPayment(payment)).await
    }

    pub async fn payment(&self, payment_id: PaymentId) -> Result<Option<Payment>, StoreError> {
        self.backend.payment(payment_id).await
    }

    pub async fn payments_for_order(&self, order_id: OrderId) -> Result<Vec<Payment>, StoreError> {
        self.backend.payments_for_order(order_id).await
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
    Reserved,
    Committed,
    Released,
}

impl ReservationState {
    fn as_str(self) -> &'static str {
        match self {
            ReservationState::Reserved => "RESERVED",
            ReservationState::Committed => "COMMITTED",
            ReservationState::Released => "RELEASED",
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
            other => Err(StoreError::Corrupt(format!("reservation state {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Stock was taken now.
    Reserved(StockLevel),
    /// The order already had a reservation (its saga is being driven again).
    AlreadyReserved(ReservationState),
    /// Not enough stock; nothing was written.
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
