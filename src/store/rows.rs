//! Rows as both backends return them, and their conversion into domain values.
//! The column types are chosen so that one Rust type decodes from either backend
//! (`BIGINT` in Postgres where SQLite has `INTEGER`, `UUID` where it has a blob,
//! `TIMESTAMPTZ` where it has RFC 3339 text).
//!
//! The schema's constraints were checked on the way in, so a failed conversion
//! means the data was changed behind the store's back: it is reported as corrupt.
//!
//! SQLite's writer reads through rusqlite, not sqlx (`sqlite_writer`): the rows
//! its writes read back have a `from_sqlite` too, which decodes the columns as
//! sqlx-sqlite stores them (a UUID as a 16-byte blob, a time as RFC 3339 text).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{StockLevel, StockedProduct, StoreError, corrupt};
use crate::domain::{
    Money, Order, OrderEvent, OrderId, Payment, PaymentId, PaymentStatus, Price, Product,
    ProductId, ProductName, Quantity, Stock,
};

#[derive(sqlx::FromRow)]
pub(super) struct ProductRow {
    product_id: String,
    product_name: String,
    price: i64,
    stock: i64,
    version: i64,
}

impl TryFrom<ProductRow> for StockedProduct {
    type Error = StoreError;
    fn try_from(row: ProductRow) -> Result<Self, StoreError> {
        Ok(StockedProduct {
            product: Product {
                product_id: product_id(row.product_id)?,
                product_name: ProductName::parse(row.product_name)
                    .map_err(|e| corrupt("product_name", e))?,
                price: Price::parse(row.price).map_err(|e| corrupt("price", e))?,
                stock: Stock::saturating(row.stock),
            },
            version: row.version,
        })
    }
}

/// A product's stock and version after a change (`RETURNING stock, version`).
#[derive(sqlx::FromRow)]
pub(super) struct StockRow {
    stock: i64,
    version: i64,
}

impl StockRow {
    /// From `stock, version`.
    pub(super) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<StockRow> {
        Ok(StockRow {
            stock: row.get(0)?,
            version: row.get(1)?,
        })
    }

    pub(super) fn level(self, product_id: ProductId) -> StockLevel {
        StockLevel {
            product_id,
            stock: Stock::saturating(self.stock),
            version: self.version,
        }
    }
}

/// What a released reservation gives back (`RETURNING product_id, quantity`).
#[derive(sqlx::FromRow)]
pub(super) struct ReleasedRow {
    product_id: String,
    pub(super) quantity: i64,
}

impl ReleasedRow {
    /// From `product_id, quantity`.
    pub(super) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReleasedRow> {
        Ok(ReleasedRow {
            product_id: row.get(0)?,
            quantity: row.get(1)?,
        })
    }

    pub(super) fn product_id(&self) -> Result<ProductId, StoreError> {
        product_id(self.product_id.clone())
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct OrderRow {
    order_id: Uuid,
    product_id: String,
    quantity: i64,
    total_amount: i64,
    step: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl OrderRow {
    /// From `order_id, product_id, quantity, total_amount, step, reason,
    /// created_at, updated_at`.
    pub(super) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<OrderRow> {
        Ok(OrderRow {
            order_id: sqlite_uuid(row, 0)?,
            product_id: row.get(1)?,
            quantity: row.get(2)?,
            total_amount: row.get(3)?,
            step: row.get(4)?,
            reason: row.get(5)?,
            created_at: sqlite_time(row, 6)?,
            updated_at: sqlite_time(row, 7)?,
        })
    }
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;
    fn try_from(row: OrderRow) -> Result<Self, StoreError> {
        Ok(Order {
            order_id: OrderId::from_uuid(row.order_id),
            product_id: product_id(row.product_id)?,
            quantity: Quantity::parse(row.quantity).map_err(|e| corrupt("quantity", e))?,
            total_amount: Money::from_cents(row.total_amount),
            step: row.step.parse().map_err(|e| corrupt("step", e))?,
            reason: row.reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    order_id: Uuid,
    seq: i64,
    step: String,
    reason: Option<String>,
    at: DateTime<Utc>,
}

impl TryFrom<EventRow> for OrderEvent {
    type Error = StoreError;
    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        Ok(OrderEvent {
            order_id: OrderId::from_uuid(row.order_id),
            seq: u32::try_from(row.seq).map_err(|e| corrupt("seq", e))?,
            step: row.step.parse().map_err(|e| corrupt("step", e))?,
            reason: row.reason,
            at: row.at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct PaymentRow {
    payment_id: Uuid,
    order_id: Uuid,
    total_amount: i64,
    status: String,
    created_at: DateTime<Utc>,
}

impl PaymentRow {
    /// From `payment_id, order_id, total_amount, status, created_at`.
    pub(super) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<PaymentRow> {
        Ok(PaymentRow {
            payment_id: sqlite_uuid(row, 0)?,
            order_id: sqlite_uuid(row, 1)?,
            total_amount: row.get(2)?,
            status: row.get(3)?,
            created_at: sqlite_time(row, 4)?,
        })
    }
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;
    fn try_from(row: PaymentRow) -> Result<Self, StoreError> {
        Ok(Payment {
            payment_id: PaymentId::from_uuid(row.payment_id),
            order_id: OrderId::from_uuid(row.order_id),
            total_amount: Money::from_cents(row.total_amount),
            status: row
                .status
                .parse::<PaymentStatus>()
                .map_err(|e| corrupt("payment status", e))?,
            created_at: row.created_at,
        })
    }
}

/// A UUID as SQLite stores it: a 16-byte blob.
fn sqlite_uuid(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Uuid> {
    let bytes = row.get_ref(column)?.as_blob()?;
    Uuid::from_slice(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// A time as SQLite stores it: RFC 3339 text.
fn sqlite_time(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text = row.get_ref(column)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                column,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })
}

fn product_id(raw: String) -> Result<ProductId, StoreError> {
    ProductId::parse(raw).map_err(|e| corrupt("product_id", e))
}

/// Converts every row, failing on the first that does not convert.
pub(super) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
