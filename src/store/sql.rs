//! The reads both backends share. SQLite and Postgres accept the same read
//! statements here (`$N` parameters), and the column types are chosen so that the
//! same Rust values bind and decode in both (see `rows`).
//!
//! sqlx's executors are generic only through a thicket of higher-ranked bounds, so
//! the shared reads are a macro that each backend expands with its own store type:
//! the statements are written once, and each expansion is checked by the compiler
//! against its own driver. Rows are decoded as the writer decodes them
//! ([`FromCells`](super::writer::FromCells), one decoding per type).

/// One read on the pool `$reads`: the statement with its binds, answering every
/// row (`fetch_all`) or at most one (`fetch_optional`), each decoded into the
/// value it stands for.
macro_rules! read {
    ($reads:expr, fetch_all($sql:expr $(, $bind:expr)*)) => {
        (sqlx::query($sql)$(.bind($bind))*.fetch_all($reads).await?)
            .iter()
            .map(FromCells::from_cells)
            .collect()
    };
    ($reads:expr, fetch_optional($sql:expr $(, $bind:expr)*)) => {
        (sqlx::query($sql)$(.bind($bind))*.fetch_optional($reads).await?)
            .map(|row| FromCells::from_cells(&row))
            .transpose()
    };
}

/// The reads, for the store type `$store` (with a `reads` pool) of the module
/// that expands it.
macro_rules! shared_reads {
    (store: $store:ident) => {
        mod shared_reads {
            use super::$store;
            use $crate::domain::{Item, Order, OrderEvent, OrderId, OwnedKey, Payment, PaymentId, ProductId, ShopperId};
            use $crate::store::rows::order_columns;
            use $crate::store::sql::read;
            use $crate::store::writer::FromCells;
            use $crate::store::{AdminSessionRow, StalledOrder, StockedProduct, StoreError};

            impl $store {
                pub(in crate::store) async fn catalog(&self) -> Result<Vec<StockedProduct>, StoreError> {
                    read!(&self.reads, fetch_all(
                        "SELECT product_id, product_name, price, stock, version FROM product \
                         ORDER BY product_id"
                    ))
                }

                pub(in crate::store) async fn product(
                    &self,
                    product_id: &ProductId,
                ) -> Result<Option<StockedProduct>, StoreError> {
                    read!(&self.reads, fetch_optional(
                        "SELECT product_id, product_name, price, stock, version FROM product \
                         WHERE product_id = $1",
                        product_id.as_str()
                    ))
                }

                pub(in crate::store) async fn order(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
                    read!(&self.reads, fetch_optional(
                        concat!("SELECT ", order_columns!(), " FROM shop_order WHERE order_id = $1"),
                        order_id.as_uuid()
                    ))
                }

                pub(in crate::store) async fn order_by_key(&self, key: &OwnedKey) -> Result<Option<Order>, StoreError> {
                    read!(&self.reads, fetch_optional(
                        concat!("SELECT ", order_columns!(), " FROM shop_order WHERE idempotency_key = $1"),
                        key.as_str()
                    ))
                }

                pub(in crate::store) async fn unfinished_orders(&self) -> Result<Vec<Order>, StoreError> {
                    read!(&self.reads, fetch_all(
                        concat!("SELECT ", order_columns!(), " FROM shop_order WHERE status = 'PENDING' ORDER BY order_id")
                    ))
                }

                pub(in crate::store) async fn order_events(
                    &self,
                    order_id: OrderId,
                    after_seq: u32,
                ) -> Result<Vec<OrderEvent>, StoreError> {
                    read!(&self.reads, fetch_all(
                        "SELECT order_id, seq, step, reason, at FROM order_event \
                         WHERE order_id = $1 AND seq > $2 ORDER BY seq",
                        order_id.as_uuid(),
                        i64::from(after_seq)
                    ))
                }

                pub(in crate::store) async fn shopper_orders(
                    &self,
                    shopper: ShopperId,
                    limit: u32,
                ) -> Result<Vec<Order>, StoreError> {
                    read!(&self.reads, fetch_all(
                        concat!("SELECT ", order_columns!(), " FROM shop_order WHERE shopper_id = $1 ORDER BY order_id DESC LIMIT $2"),
                        shopper.as_uuid(),
                        i64::from(limit)
                    ))
                }

                pub(in crate::store) async fn payment(
                    &self,
                    payment_id: PaymentId,
                ) -> Result<Option<Payment>, StoreError> {
                    read!(&self.reads, fetch_optional(
                        "SELECT payment_id, order_id, total_amount, status, reason, created_at FROM payment \
                         WHERE payment_id = $1",
                        payment_id.as_uuid()
                    ))
                }

                pub(in crate::store) async fn recent_orders(
                    &self,
                    status: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<Order>, StoreError> {
                    read!(&self.reads, fetch_all(
                        concat!("SELECT ", order_columns!(), " FROM shop_order WHERE ($1 IS NULL OR status = $1) \
                         ORDER BY order_id DESC LIMIT $2"),
                        status,
                        i64::from(limit)
                    ))
                }

                pub(in crate::store) async fn stalled_orders(
                    &self,
                    limit: u32,
                ) -> Result<Vec<StalledOrder>, StoreError> {
                    read!(&self.reads, fetch_all(
                        concat!("SELECT stalled_since, last_error, ", order_columns!(), " FROM shop_order \
                         WHERE stalled_since IS NOT NULL ORDER BY order_id DESC LIMIT $1"),
                        i64::from(limit)
                    ))
                }

                pub(in crate::store) async fn cart(&self, shopper: ShopperId) -> Result<Vec<Item>, StoreError> {
                    read!(&self.reads, fetch_all(
                        "SELECT product_id, quantity FROM cart_line WHERE shopper_id = $1 \
                         ORDER BY added_at, product_id",
                        shopper.as_uuid()
                    ))
                }

                pub(in crate::store) async fn shopper_summary(
                    &self,
                    shopper: ShopperId,
                ) -> Result<(i64, bool), StoreError> {
                    let row = sqlx::query(
                        "SELECT CAST(COALESCE((SELECT SUM(quantity) FROM cart_line WHERE shopper_id = $1), 0) \
                         AS BIGINT), CAST(CASE WHEN EXISTS (SELECT 1 FROM shop_order \
                         WHERE shopper_id = $1 AND status = 'PENDING') THEN 1 ELSE 0 END AS BIGINT)",
                    )
                    .bind(shopper.as_uuid())
                    .fetch_one(&self.reads)
                    .await?;
                    let (units, pending) = <(i64, i64)>::from_cells(&row)?;
                    Ok((units, pending != 0))
                }

                pub(in crate::store) async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(&self.reads).await?;
                    Ok(())
                }

                pub(in crate::store) async fn admin_session(
                    &self,
                    session_id: uuid::Uuid,
                ) -> Result<Option<AdminSessionRow>, StoreError> {
                    read!(&self.reads, fetch_optional(
                        "SELECT session_id, token_digest, csrf, expires_at FROM admin_session \
                         WHERE session_id = $1",
                        session_id
                    ))
                }

                pub(in crate::store) async fn payments_for_order(
                    &self,
                    order_id: OrderId,
                ) -> Result<Vec<Payment>, StoreError> {
                    read!(&self.reads, fetch_all(
                        "SELECT payment_id, order_id, total_amount, status, reason, created_at FROM payment \
                         WHERE order_id = $1",
                        order_id.as_uuid()
                    ))
                }
            }
        }
    };
}

pub(super) use {read, shared_reads};
