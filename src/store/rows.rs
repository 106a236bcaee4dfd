//! Rows as both backends return them, and their conversion into domain values.
//! The column types are chosen so that one Rust type decodes from either backend
//! (`BIGINT` in Postgres where SQLite has `INTEGER`, `UUID` where it has a blob,
//! `TIMESTAMPTZ` where it has RFC 3339 text).
//!
//! Every row type is decoded once, through [`FromCells`], in the columns' order,
//! from whichever driver hands it over: sqlx for the reads, and for Postgres'
//! writer; rusqlite for SQLite's writer.
//!
//! The schema's constraints were checked on the way in, so a failed conversion
//! means the data was changed behind the store's back: it is reported as corrupt.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::writer::{Cells, FromCells, get, opt};
use super::{AdminSessionRow, StockedProduct, StoreError, corrupt};
use crate::domain::{
    Item, Money, Order, OrderEvent, OrderId, OrderLine, Payment, PaymentId, PaymentMethod,
    PaymentStatus, Price, Product, ProductId, ProductName, Quantity, Stock,
};

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
                product_name: ProductName::stored(row.product_name)
                    .map_err(|e| corrupt("product_name", e))?,
                price: Price::parse(row.price).map_err(|e| corrupt("price", e))?,
                stock: Stock::saturating(row.stock),
            },
            version: row.version,
        })
    }
}

/// The columns an [`OrderRow`] is read from, in order, for `concat!` into a
/// statement.
macro_rules! order_columns {
    () => {
        "order_id, total_amount, step, reason, created_at, updated_at, lines, payment_method"
    };
}
pub(super) use order_columns;

pub(super) struct OrderRow {
    order_id: Uuid,
    total_amount: i64,
    step: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    lines: String,
    payment_method: Option<String>,
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;
    fn try_from(row: OrderRow) -> Result<Self, StoreError> {
        let lines: Vec<OrderLine> =
            serde_json::from_str(&row.lines).map_err(|e| corrupt("lines", e))?;
        if lines.is_empty() {
            return Err(corrupt("lines", "an order without lines"));
        }
        let payment_method = (row.payment_method.as_deref())
            .map(serde_json::from_str::<PaymentMethod>)
            .transpose()
            .map_err(|e| corrupt("payment_method", e))?;
        Ok(Order {
            order_id: OrderId::from_uuid(row.order_id),
            lines,
            payment_method,
            total_amount: Money::from_cents(row.total_amount),
            step: row.step.parse().map_err(|e| corrupt("step", e))?,
            reason: row.reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub(super) struct CartRow {
    product_id: String,
    quantity: i64,
}

impl FromCells for CartRow {
    /// From `product_id, quantity`.
    fn from_cells(row: &impl Cells) -> Result<Self, StoreError> {
        Ok(CartRow {
            product_id: get(row, 0)?,
            quantity: get(row, 1)?,
        })
    }
}

impl TryFrom<CartRow> for Item {
    type Error = StoreError;
    fn try_from(row: CartRow) -> Result<Self, StoreError> {
        Ok(Item {
            product_id: product_id(row.product_id)?,
            quantity: Quantity::parse(row.quantity).map_err(|e| corrupt("quantity", e))?,
        })
    }
}

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

pub(super) struct PaymentRow {
    payment_id: Uuid,
    order_id: Uuid,
    total_amount: i64,
    status: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
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
            reason: row.reason,
            created_at: row.created_at,
        })
    }
}

impl FromCells for ProductRow {
    /// From `product_id, product_name, price, stock, version`.
    fn from_cells(row: &impl Cells) -> Result<Self, StoreError> {
        Ok(ProductRow {
            product_id: get(row, 0)?,
            product_name: get(row, 1)?,
            price: get(row, 2)?,
            stock: get(row, 3)?,
            version: get(row, 4)?,
        })
    }
}

impl FromCells for OrderRow {
    fn from_cells(row: &impl Cells) -> Result<Self, StoreError> {
        OrderRow::from_cells_at(row, 0)
    }
}

/// The value each row stands for, failing on the first that does not convert.
pub(super) fn decode<R, T>(rows: &[impl Cells]) -> Result<Vec<T>, StoreError>
where
    R: FromCells,
    T: TryFrom<R, Error = StoreError>,
{
    rows.iter().map(decode_one).collect()
}

pub(super) fn decode_one<R, T>(row: &impl Cells) -> Result<T, StoreError>
where
    R: FromCells,
    T: TryFrom<R, Error = StoreError>,
{
    T::try_from(R::from_cells(row)?)
}

impl OrderRow {
    /// From the [`order_columns`], starting at column `at`.
    pub(super) fn from_cells_at(row: &impl Cells, at: usize) -> Result<OrderRow, StoreError> {
        Ok(OrderRow {
            order_id: get(row, at)?,
            total_amount: get(row, at + 1)?,
            step: get(row, at + 2)?,
            reason: opt(row, at + 3)?,
            created_at: get(row, at + 4)?,
            updated_at: get(row, at + 5)?,
            lines: get(row, at + 6)?,
            payment_method: opt(row, at + 7)?,
        })
    }
}

impl FromCells for EventRow {
    /// From `order_id, seq, step, reason, at`.
    fn from_cells(row: &impl Cells) -> Result<Self, StoreError> {
        Ok(EventRow {
            order_id: get(row, 0)?,
            seq: get(row, 1)?,
            step: get(row, 2)?,
            reason: opt(row, 3)?,
            at: get(row, 4)?,
        })
    }
}

impl FromCells for PaymentRow {
    /// From `payment_id, order_id, total_amount, status, reason, created_at`.
    fn from_cells(row: &impl Cells) -> Result<Self, StoreError> {
        Ok(PaymentRow {
            payment_id: get(row, 0)?,
            order_id: get(row, 1)?,
            total_amount: get(row, 2)?,
            status: get(row, 3)?,
            reason: opt(row, 4)?,
            created_at: get(row, 5)?,
        })
    }
}

impl FromCells for AdminSessionRow {
    /// From `session_id, token_digest, csrf, expires_at`.
    fn from_cells(row: &impl Cells) -> Result<Self, StoreError> {
        Ok(AdminSessionRow {
            session_id: get(row, 0)?,
            token_digest: get(row, 1)?,
            csrf: get(row, 2)?,
            expires_at: get(row, 3)?,
        })
    }
}

/// An order with its stall: `stalled_since, last_error`, then the order's columns.
pub(super) struct StalledRow {
    since: DateTime<Utc>,
    error: Option<String>,
    order: OrderRow,
}

impl FromCells for StalledRow {
    fn from_cells(row: &impl Cells) -> Result<Self, StoreError> {
        Ok(StalledRow {
            since: get(row, 0)?,
            error: opt(row, 1)?,
            order: OrderRow::from_cells_at(row, 2)?,
        })
    }
}

impl TryFrom<StalledRow> for super::StalledOrder {
    type Error = StoreError;
    fn try_from(row: StalledRow) -> Result<Self, StoreError> {
        Ok(super::StalledOrder {
            order: Order::try_from(row.order)?,
            since: row.since,
            error: row.error.unwrap_or_default(),
        })
    }
}

/// Rows from sqlx: each column decoded by sqlx itself, as it stores it.
macro_rules! sqlx_cells {
    ($($row:ty),*) => {$(
        impl Cells for $row {
            fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn uuid(&self, column: usize) -> Result<Option<Uuid>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn time(&self, column: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    )*};
}
sqlx_cells!(sqlx::postgres::PgRow, sqlx::sqlite::SqliteRow);

fn product_id(raw: String) -> Result<ProductId, StoreError> {
    ProductId::parse(raw).map_err(|e| corrupt("product_id", e))
}
