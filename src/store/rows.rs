//! Rows as both backends return them, decoded into domain values.
//! The column types are chosen so that one Rust type decodes from either backend
//! (`BIGINT` in Postgres where SQLite has `INTEGER`, `UUID` where it has a blob,
//! `TIMESTAMPTZ` where it has RFC 3339 text).
//!
//! Every value is decoded once, through [`FromCells`], in the columns' order,
//! from whichever driver hands it over: sqlx for the reads, and for Postgres'
//! writer; rusqlite for SQLite's writer.
//!
//! The schema's constraints were checked on the way in, so a failed conversion
//! means the data was changed behind the store's back: it is reported as corrupt.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::writer::{Cells, FromCells, get};
use super::{AdminSessionRow, StalledOrder, StockedProduct, StoreError, corrupt};
use crate::domain::{
    Item, Money, Order, OrderEvent, OrderId, OrderLine, Payment, PaymentId, PaymentMethod,
    PaymentStatus, Price, Product, ProductId, ProductName, Quantity, Stock,
};

/// Reads the named columns into locals of the types given, in order from column
/// `$at` on (an `Option` type where the column may be NULL). All are read
/// before any is converted into a domain value.
macro_rules! columns {
    ($row:ident, $at:expr => $($name:ident: $ty:ty),* $(,)?) => {
        let mut next = $at;
        $(let $name: $ty = get($row, next)?; next += 1;)*
        let _ = next;
    };
}

impl FromCells for StockedProduct {
    fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError> {
        columns!(row, at => id: String, name: String, price: i64, stock: i64, version: i64);
        Ok(StockedProduct {
            product: Product {
                product_id: product_id(id)?,
                product_name: ProductName::stored(name).map_err(|e| corrupt("product_name", e))?,
                price: Price::parse(price).map_err(|e| corrupt("price", e))?,
                stock: Stock::saturating(stock),
            },
            version,
        })
    }
}

/// The columns an [`Order`] is read from, in order, for `concat!` into a
/// statement.
macro_rules! order_columns {
    () => {
        "order_id, total_amount, step, reason, created_at, updated_at, lines, payment_method"
    };
}
pub(super) use order_columns;

impl FromCells for Order {
    fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError> {
        columns!(row, at => order_id: Uuid, total_amount: i64, step: String,
            reason: Option<String>, created_at: DateTime<Utc>, updated_at: DateTime<Utc>,
            lines: String, payment_method: Option<String>);
        let lines: Vec<OrderLine> =
            serde_json::from_str(&lines).map_err(|e| corrupt("lines", e))?;
        if lines.is_empty() {
            return Err(corrupt("lines", "an order without lines"));
        }
        let payment_method = (payment_method.as_deref())
            .map(serde_json::from_str::<PaymentMethod>)
            .transpose()
            .map_err(|e| corrupt("payment_method", e))?;
        Ok(Order {
            order_id: OrderId::from_uuid(order_id),
            lines,
            payment_method,
            total_amount: Money::from_cents(total_amount),
            step: step.parse().map_err(|e| corrupt("step", e))?,
            reason,
            created_at,
            updated_at,
        })
    }
}

impl FromCells for Item {
    fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError> {
        columns!(row, at => id: String, quantity: i64);
        Ok(Item {
            product_id: product_id(id)?,
            quantity: Quantity::parse(quantity).map_err(|e| corrupt("quantity", e))?,
        })
    }
}

impl FromCells for OrderEvent {
    fn from_cells_at(row: &impl Cells, first: usize) -> Result<Self, StoreError> {
        columns!(row, first => order_id: Uuid, seq: i64, step: String, reason: Option<String>,
            at: DateTime<Utc>);
        Ok(OrderEvent {
            order_id: OrderId::from_uuid(order_id),
            seq: u32::try_from(seq).map_err(|e| corrupt("seq", e))?,
            step: step.parse().map_err(|e| corrupt("step", e))?,
            reason,
            at,
        })
    }
}

impl FromCells for Payment {
    fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError> {
        columns!(row, at => payment_id: Uuid, order_id: Uuid, total_amount: i64, status: String,
            reason: Option<String>, created_at: DateTime<Utc>);
        Ok(Payment {
            payment_id: PaymentId::from_uuid(payment_id),
            order_id: OrderId::from_uuid(order_id),
            total_amount: Money::from_cents(total_amount),
            status: (status.parse::<PaymentStatus>()).map_err(|e| corrupt("payment status", e))?,
            reason,
            created_at,
        })
    }
}

impl FromCells for AdminSessionRow {
    fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError> {
        columns!(row, at => session_id: Uuid, token_digest: String, csrf: String, expires_at: i64);
        Ok(AdminSessionRow {
            session_id,
            token_digest,
            csrf,
            expires_at,
        })
    }
}

/// An order with its stall: `stalled_since, last_error`, then the order's columns.
impl FromCells for StalledOrder {
    fn from_cells_at(row: &impl Cells, at: usize) -> Result<Self, StoreError> {
        columns!(row, at => since: DateTime<Utc>, error: Option<String>);
        Ok(StalledOrder {
            order: Order::from_cells_at(row, at + 2)?,
            since,
            error: error.unwrap_or_default(),
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
