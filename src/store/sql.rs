//! The reads both backends share, and Postgres' writes. SQLite and Postgres
//! accept the same read statements here (`$N` parameters), and the column types
//! are chosen so that the same Rust values bind and decode in both (see `rows`).
//!
//! sqlx's executors are generic only through a thicket of higher-ranked bounds, so
//! the shared code is macros that each backend expands with its own types: the
//! statements are written once, and each expansion is checked by the compiler
//! against its own driver. Each macro expands into a module of its own, so a
//! backend may take one without the other:
//!
//! - `shared_reads!`, the reads from the read pool, which both backends expand.
//! - `shared_writes!`, the writes as [`WriteOp`]s for the async group-commit
//!   writer, which only Postgres expands. SQLite runs its writes on a thread of
//!   its own through rusqlite (`sqlite_writer`), written out in `sqlite` to write
//!   the same rows (with `?N` parameters, and without `RETURNING` on the order
//!   path): whatever changes here must change there too. The backend
//!   that expands them supplies `announce_event`, which Postgres uses to tell the
//!   other instances about an event in the same transaction that records it.
//!
//! [`WriteOp`]: super::writer::WriteOp

/// The reads, for the store type `$store` (with a `reads` pool) of the module
/// that expands it.
macro_rules! shared_reads {
    (store: $store:ident) => {
        mod shared_reads {
            use super::$store;
            use $crate::domain::{Order, OrderEvent, OrderId, Payment, PaymentId, ProductId, ShopperId};
            use $crate::store::rows::{EventRow, OrderRow, PaymentRow, ProductRow, convert};
            use $crate::store::{StockedProduct, StoreError};

            impl $store {
                pub(in crate::store) async fn catalog(&self) -> Result<Vec<StockedProduct>, StoreError> {
                    let rows: Vec<ProductRow> = sqlx::query_as(
                        "SELECT product_id, product_name, price, stock, version FROM product \
                         ORDER BY product_id",
                    )
                    .fetch_all(&self.reads)
                    .await?;
                    convert(rows)
                }

                /// Up to `limit` products after `after`, in product id order.
                pub(in crate::store) async fn catalog_page(
                    &self,
                    after: Option<&ProductId>,
                    limit: u32,
                ) -> Result<Vec<StockedProduct>, StoreError> {
                    let rows: Vec<ProductRow> = sqlx::query_as(
                        "SELECT product_id, product_name, price, stock, version FROM product \
                         WHERE $1 IS NULL OR product_id > $1 ORDER BY product_id LIMIT $2",
                    )
                    .bind(after.map(ProductId::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&self.reads)
                    .await?;
                    convert(rows)
                }

                pub(in crate::store) async fn product(
                    &self,
                    product_id: &ProductId,
                ) -> Result<Option<StockedProduct>, StoreError> {
                    let row: Option<ProductRow> = sqlx::query_as(
                        "SELECT product_id, product_name, price, stock, version FROM product \
                         WHERE product_id = $1",
                    )
                    .bind(product_id.as_str())
                    .fetch_optional(&self.reads)
                    .await?;
                    row.map(StockedProduct::try_from).transpose()
                }

                pub(in crate::store) async fn order(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
                    let row: Option<OrderRow> = sqlx::query_as(
                        "SELECT order_id, product_id, quantity, total_amount, step, reason, created_at, \
                         updated_at FROM shop_order WHERE order_id = $1",
                    )
                    .bind(order_id.as_uuid())
                    .fetch_optional(&self.reads)
                    .await?;
                    row.map(Order::try_from).transpose()
                }

                pub(in crate::store) async fn unfinished_orders(&self) -> Result<Vec<Order>, StoreError> {
                    let rows: Vec<OrderRow> = sqlx::query_as(
                        "SELECT order_id, product_id, quantity, total_amount, step, reason, created_at, \
                         updated_at FROM shop_order WHERE status = 'PENDING' ORDER BY order_id",
                    )
                    .fetch_all(&self.reads)
                    .await?;
                    convert(rows)
                }

                pub(in crate::store) async fn order_events(
                    &self,
                    order_id: OrderId,
                    after_seq: u32,
                ) -> Result<Vec<OrderEvent>, StoreError> {
                    let rows: Vec<EventRow> = sqlx::query_as(
                        "SELECT order_id, seq, step, reason, at FROM order_event \
                         WHERE order_id = $1 AND seq > $2 ORDER BY seq",
                    )
                    .bind(order_id.as_uuid())
                    .bind(i64::from(after_seq))
                    .fetch_all(&self.reads)
                    .await?;
                    convert(rows)
                }

                pub(in crate::store) async fn shopper_orders(
                    &self,
                    shopper: ShopperId,
                    limit: u32,
                ) -> Result<Vec<Order>, StoreError> {
                    let rows: Vec<OrderRow> = sqlx::query_as(
                        "SELECT order_id, product_id, quantity, total_amount, step, reason, created_at, \
                         updated_at FROM shop_order WHERE shopper_id = $1 ORDER BY order_id DESC LIMIT $2",
                    )
                    .bind(shopper.as_uuid())
                    .bind(i64::from(limit))
                    .fetch_all(&self.reads)
                    .await?;
                    convert(rows)
                }

                pub(in crate::store) async fn payment(
                    &self,
                    payment_id: PaymentId,
                ) -> Result<Option<Payment>, StoreError> {
                    let row: Option<PaymentRow> = sqlx::query_as(
                        "SELECT payment_id, order_id, total_amount, status, created_at FROM payment \
                         WHERE payment_id = $1",
                    )
                    .bind(payment_id.as_uuid())
                    .fetch_optional(&self.reads)
                    .await?;
                    row.map(Payment::try_from).transpose()
                }

                pub(in crate::store) async fn payments_for_order(
                    &self,
                    order_id: OrderId,
                ) -> Result<Vec<Payment>, StoreError> {
                    let rows: Vec<PaymentRow> = sqlx::query_as(
                        "SELECT payment_id, order_id, total_amount, status, created_at FROM payment \
                         WHERE order_id = $1",
                    )
                    .bind(order_id.as_uuid())
                    .fetch_all(&self.reads)
                    .await?;
                    convert(rows)
                }
            }
        }
    };
}

/// The writes, as [`WriteOp`](super::writer::WriteOp)s on `$db`, whose connection
/// type is `$conn`. The module that expands it supplies `announce_event`.
macro_rules! shared_writes {
    (db: $db:ty, conn: $conn:ty) => {
        mod shared_writes {
            use futures_util::future::BoxFuture;
            use $crate::domain::{Order, OrderEvent, OrderId, OrderStep, Payment, Stock};
            use $crate::store::rows::{OrderRow, PaymentRow, ReleasedRow, StockRow};
            use $crate::store::writer::WriteOp;
            use $crate::store::{
                CommitReservation, CreateOrderOutcome, NewOrder, OrderTransition, RecordPayment,
                ReleaseReservation, ReservationState, Reserve, ReserveOutcome, StockLevel,
                StockedProduct, StoreError, UpsertProduct,
            };

            impl WriteOp<$db> for UpsertProduct {
                type Output = StockedProduct;

                fn lock_key(&self) -> Option<&str> {
                    Some(self.0.product_id.as_str())
                }

                fn apply<'c>(
                    &'c self,
                    conn: &'c mut $conn,
                ) -> BoxFuture<'c, Result<StockedProduct, StoreError>> {
                    Box::pin(async move {
                        let product = &self.0;
                        let version: i64 = sqlx::query_scalar(
                            "INSERT INTO product (product_id, product_name, price, stock, version, updated_at) \
                             VALUES ($1, $2, $3, $4, 1, $5) \
                             ON CONFLICT (product_id) DO UPDATE SET product_name = excluded.product_name, \
                             price = excluded.price, stock = excluded.stock, version = product.version + 1, \
                             updated_at = excluded.updated_at \
                             RETURNING version",
                        )
                        .bind(product.product_id.as_str())
                        .bind(product.product_name.as_str())
                        .bind(product.price.money().cents())
                        .bind(product.stock.units())
                        .bind(chrono::Utc::now())
                        .fetch_one(&mut *conn)
                        .await?;
                        Ok(StockedProduct {
                            product: product.clone(),
                            version,
                        })
                    })
                }
            }

            impl WriteOp<$db> for Reserve {
                type Output = ReserveOutcome;

                fn lock_key(&self) -> Option<&str> {
                    Some(self.product_id.as_str())
                }

                fn apply<'c>(
                    &'c self,
                    conn: &'c mut $conn,
                ) -> BoxFuture<'c, Result<ReserveOutcome, StoreError>> {
                    Box::pin(async move {
                        let existing: Option<String> =
                            sqlx::query_scalar("SELECT state FROM reservation WHERE order_id = $1")
                                .bind(self.order_id.as_uuid())
                                .fetch_optional(&mut *conn)
                                .await?;
                        if let Some(state) = existing {
                            return Ok(ReserveOutcome::AlreadyDecided(state.parse()?));
                        }

                        // The condition is the guard against overselling: the row changes
                        // only if enough stock is there, whoever else is reserving, in this
                        // process or another.
                        let taken: Option<StockRow> = sqlx::query_as(
                            "UPDATE product SET stock = stock - $1, version = version + 1, updated_at = $3 \
                             WHERE product_id = $2 AND stock >= $1 RETURNING stock, version",
                        )
                        .bind(i64::from(self.quantity))
                        .bind(self.product_id.as_str())
                        .bind(self.at)
                        .fetch_optional(&mut *conn)
                        .await?;
                        let Some(taken) = taken else {
                            let available: Option<i64> =
                                sqlx::query_scalar("SELECT stock FROM product WHERE product_id = $1")
                                    .bind(self.product_id.as_str())
                                    .fetch_optional(&mut *conn)
                                    .await?;
                            let Some(units) = available else {
                                return Ok(ReserveOutcome::UnknownProduct);
                            };
                            record_reservation(conn, self, ReservationState::Refused).await?;
                            return Ok(ReserveOutcome::Insufficient {
                                available: Stock::saturating(units),
                            });
                        };
                        record_reservation(conn, self, ReservationState::Reserved).await?;
                        Ok(ReserveOutcome::Reserved(taken.level(self.product_id.clone())))
                    })
                }
            }

            /// Records the order's reservation, reserved or refused. The primary key
            /// on the order id is the backstop: a second one for the order fails
            /// here, and its transaction, with any stock it took, is rolled back.
            async fn record_reservation(
                conn: &mut $conn,
                reserve: &Reserve,
                state: ReservationState,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO reservation (order_id, product_id, quantity, state, updated_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(reserve.order_id.as_uuid())
                .bind(reserve.product_id.as_str())
                .bind(i64::from(reserve.quantity))
                .bind(state.as_str())
                .bind(reserve.at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            impl WriteOp<$db> for CommitReservation {
                type Output = bool;

                fn apply<'c>(&'c self, conn: &'c mut $conn) -> BoxFuture<'c, Result<bool, StoreError>> {
                    Box::pin(async move {
                        let done = sqlx::query(
                            "UPDATE reservation SET state = $1, updated_at = $2 \
                             WHERE order_id = $3 AND state = $4",
                        )
                        .bind(ReservationState::Committed.as_str())
                        .bind(self.at)
                        .bind(self.order_id.as_uuid())
                        .bind(ReservationState::Reserved.as_str())
                        .execute(&mut *conn)
                        .await?;
                        Ok(done.rows_affected() == 1)
                    })
                }
            }

            impl WriteOp<$db> for ReleaseReservation {
                type Output = Option<StockLevel>;

                fn apply<'c>(
                    &'c self,
                    conn: &'c mut $conn,
                ) -> BoxFuture<'c, Result<Option<StockLevel>, StoreError>> {
                    Box::pin(async move {
                        let released: Option<ReleasedRow> = sqlx::query_as(
                            "UPDATE reservation SET state = $1, updated_at = $2 \
                             WHERE order_id = $3 AND state = $4 RETURNING product_id, quantity",
                        )
                        .bind(ReservationState::Released.as_str())
                        .bind(self.at)
                        .bind(self.order_id.as_uuid())
                        .bind(ReservationState::Reserved.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                        let Some(released) = released else {
                            return Ok(None);
                        };
                        let product_id = released.product_id()?;
                        let row: StockRow = sqlx::query_as(
                            "UPDATE product SET stock = stock + $1, version = version + 1, updated_at = $2 \
                             WHERE product_id = $3 RETURNING stock, version",
                        )
                        .bind(released.quantity)
                        .bind(self.at)
                        .bind(product_id.as_str())
                        .fetch_one(&mut *conn)
                        .await?;
                        Ok(Some(row.level(product_id)))
                    })
                }
            }

            impl WriteOp<$db> for NewOrder {
                type Output = CreateOrderOutcome;

                fn apply<'c>(
                    &'c self,
                    conn: &'c mut $conn,
                ) -> BoxFuture<'c, Result<CreateOrderOutcome, StoreError>> {
                    Box::pin(async move {
                        let key = self.idempotency_key.as_ref().map(|key| key.as_str());
                        // A concurrent insert with the same key, from this process or
                        // another, makes this one do nothing; the order it made is then
                        // read back below.
                        let inserted = sqlx::query(
                            "INSERT INTO shop_order (order_id, product_id, quantity, total_amount, step, \
                             status, reason, idempotency_key, shopper_id, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $9) \
                             ON CONFLICT (idempotency_key) DO NOTHING",
                        )
                        .bind(self.order_id.as_uuid())
                        .bind(self.product_id.as_str())
                        .bind(i64::from(self.quantity))
                        .bind(self.total_amount.cents())
                        .bind(OrderStep::Placed.as_str())
                        .bind(OrderStep::Placed.status().as_str())
                        .bind(key)
                        .bind(self.shopper_id.map(|shopper| shopper.as_uuid()))
                        .bind(self.at)
                        .execute(&mut *conn)
                        .await?;

                        if inserted.rows_affected() == 0 {
                            let row: OrderRow = sqlx::query_as(
                                "SELECT order_id, product_id, quantity, total_amount, step, reason, \
                                 created_at, updated_at FROM shop_order WHERE idempotency_key = $1",
                            )
                            .bind(key)
                            .fetch_one(&mut *conn)
                            .await?;
                            return Ok(CreateOrderOutcome::Existing(Order::try_from(row)?));
                        }

                        let order = Order {
                            order_id: self.order_id,
                            product_id: self.product_id.clone(),
                            quantity: self.quantity,
                            total_amount: self.total_amount,
                            step: OrderStep::Placed,
                            reason: None,
                            created_at: self.at,
                            updated_at: self.at,
                        };
                        record_event(conn, self.order_id, OrderStep::Placed, None, self.at).await?;
                        Ok(CreateOrderOutcome::Created(order))
                    })
                }
            }

            impl WriteOp<$db> for OrderTransition {
                type Output = Option<OrderEvent>;

                fn apply<'c>(
                    &'c self,
                    conn: &'c mut $conn,
                ) -> BoxFuture<'c, Result<Option<OrderEvent>, StoreError>> {
                    Box::pin(async move {
                        // An order moves only along an arrow of the saga, from the step
                        // before this one: a repeated or late transition (a saga driven
                        // again, or two runs of one saga) moves nothing.
                        let Some(from) = self.step.previous() else {
                            return Ok(None);
                        };
                        let moved = sqlx::query(
                            "UPDATE shop_order SET step = $1, status = $2, reason = $3, updated_at = $4 \
                             WHERE order_id = $5 AND step = $6",
                        )
                        .bind(self.step.as_str())
                        .bind(self.step.status().as_str())
                        .bind(self.reason.as_deref())
                        .bind(self.at)
                        .bind(self.order_id.as_uuid())
                        .bind(from.as_str())
                        .execute(&mut *conn)
                        .await?;
                        if moved.rows_affected() == 0 {
                            return Ok(None);
                        }
                        let event = record_event(
                            conn,
                            self.order_id,
                            self.step,
                            self.reason.as_deref(),
                            self.at,
                        )
                        .await?;
                        Ok(Some(event))
                    })
                }
            }

            /// Appends the order's next event to its outbox, and announces it.
            async fn record_event(
                conn: &mut $conn,
                order_id: OrderId,
                step: OrderStep,
                reason: Option<&str>,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<OrderEvent, StoreError> {
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO order_event (order_id, seq, step, status, reason, at) \
                     VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM order_event WHERE order_id = $1), \
                     $2, $3, $4, $5) RETURNING seq",
                )
                .bind(order_id.as_uuid())
                .bind(step.as_str())
                .bind(step.status().as_str())
                .bind(reason)
                .bind(at)
                .fetch_one(&mut *conn)
                .await?;
                let event = OrderEvent {
                    order_id,
                    seq: u32::try_from(seq).map_err(|e| $crate::store::corrupt("seq", e))?,
                    step,
                    reason: reason.map(str::to_owned),
                    at,
                };
                super::announce_event(conn, &event).await?;
                Ok(event)
            }

            impl WriteOp<$db> for RecordPayment {
                type Output = Payment;

                fn apply<'c>(&'c self, conn: &'c mut $conn) -> BoxFuture<'c, Result<Payment, StoreError>> {
                    Box::pin(async move {
                        let payment = &self.0;
                        let inserted = sqlx::query(
                            "INSERT INTO payment (payment_id, order_id, total_amount, status, created_at) \
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
                        )
                        .bind(payment.payment_id.as_uuid())
                        .bind(payment.order_id.as_uuid())
                        .bind(payment.total_amount.cents())
                        .bind(payment.status.as_str())
                        .bind(payment.created_at)
                        .execute(&mut *conn)
                        .await?;
                        if inserted.rows_affected() == 1 {
                            return Ok(payment.clone());
                        }
                        let existing: PaymentRow = sqlx::query_as(
                            "SELECT payment_id, order_id, total_amount, status, created_at FROM payment \
                             WHERE order_id = $1",
                        )
                        .bind(payment.order_id.as_uuid())
                        .fetch_one(&mut *conn)
                        .await?;
                        Payment::try_from(existing)
                    })
                }
            }
        }
    };
}

pub(super) use {shared_reads, shared_writes};
