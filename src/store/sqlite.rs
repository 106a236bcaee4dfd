//! The SQLite backend: one write connection owned by the group-commit writer, a
//! read-only pool for everything else, WAL so that readers never block the writer.
//! `synchronous=NORMAL` (the default) survives a killed process but may lose the
//! last commits on power loss; `FULL` survives both, at the cost of an fsync per
//! commit.

use std::str::FromStr;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow,
};
use sqlx::{ConnectOptions, Row, Sqlite};
use uuid::Uuid;

use super::writer::{WriteOp, Writer};
use super::{
    CommitReservation, CreateOrderOutcome, NewOrder, OrderTransition, RecordPayment,
    ReleaseReservation, ReservationState, Reserve, ReserveOutcome, StockLevel, StockedProduct,
    StoreError, StoreOptions, UpsertProduct, corrupt,
};
use crate::domain::{
    Money, Order, OrderEvent, OrderId, OrderStep, Payment, PaymentId, PaymentStatus, Price,
    Product, ProductId, ProductName, Quantity, ShopperId, Stock,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How hard SQLite works to make a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSynchronous {
    /// Durable against a crashed or killed process; the last commits may be lost on power loss.
    Normal,
    /// Durable against power loss too: one fsync per commit.
    Full,
}

#[derive(Clone)]
pub(super) struct SqliteStore {
    writer: Writer<Sqlite>,
    reads: SqlitePool,
}

impl SqliteStore {
    pub(super) async fn open(options: &StoreOptions) -> Result<SqliteStore, StoreError> {
        let connect = connect_options(options)?;

        let mut write_conn = connect.clone().connect().await?;
        MIGRATOR.run(&mut write_conn).await?;

        let reads = SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;

        Ok(SqliteStore {
            writer: Writer::spawn(write_conn, options.max_batch),
            reads,
        })
    }

    pub(super) async fn write<W: WriteOp<Sqlite>>(&self, op: W) -> Result<W::Output, StoreError> {
        self.writer.write(op).await
    }

    pub(super) async fn catalog(&self) -> Result<Vec<StockedProduct>, StoreError> {
        sqlx::query(
            "SELECT product_id, product_name, price, stock, version FROM product ORDER BY product_id",
        )
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(stocked_product)
        .collect()
    }

    pub(super) async fn order(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
        sqlx::query(SELECT_ORDER_BY_ID)
            .bind(order_id.as_uuid())
            .fetch_optional(&self.reads)
            .await?
            .as_ref()
            .map(order)
            .transpose()
    }

    pub(super) async fn unfinished_orders(&self) -> Result<Vec<Order>, StoreError> {
        sqlx::query(
            "SELECT order_id, product_id, quantity, total_amount, step, reason, created_at, updated_at \
             FROM shop_order WHERE status = 'PENDING' ORDER BY order_id",
        )
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(order)
        .collect()
    }

    pub(super) async fn order_events(
        &self,
        order_id: OrderId,
        after_seq: u32,
    ) -> Result<Vec<OrderEvent>, StoreError> {
        sqlx::query(
            "SELECT order_id, seq, step, reason, at FROM order_event \
             WHERE order_id = ?1 AND seq > ?2 ORDER BY seq",
        )
        .bind(order_id.as_uuid())
        .bind(after_seq)
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(order_event)
        .collect()
    }

    pub(super) async fn shopper_orders(
        &self,
        shopper: ShopperId,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        sqlx::query(
            "SELECT order_id, product_id, quantity, total_amount, step, reason, created_at, updated_at \
             FROM shop_order WHERE shopper_id = ?1 ORDER BY order_id DESC LIMIT ?2",
        )
        .bind(shopper.as_uuid())
        .bind(limit)
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(order)
        .collect()
    }

    pub(super) async fn payment(
        &self,
        payment_id: PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        sqlx::query(
            "SELECT payment_id, order_id, total_amount, status, created_at FROM payment WHERE payment_id = ?1",
        )
        .bind(payment_id.as_uuid())
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(payment)
        .transpose()
    }

    pub(super) async fn payments_for_order(
        &self,
        order_id: OrderId,
    ) -> Result<Vec<Payment>, StoreError> {
        sqlx::query(SELECT_PAYMENT_BY_ORDER)
            .bind(order_id.as_uuid())
            .fetch_all(&self.reads)
            .await?
            .iter()
            .map(payment)
            .collect()
    }
}

fn connect_options(options: &StoreOptions) -> Result<SqliteConnectOptions, StoreError> {
    let url = options.url.as_str();
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") || path.starts_with(":memory:") {
        // An in-memory database would be a different one per connection.
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    let synchronous = match options.sqlite_synchronous {
        SqliteSynchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        SqliteSynchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
    };
    Ok(SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(options.acquire_timeout))
}

const SELECT_ORDER_BY_ID: &str = "SELECT order_id, product_id, quantity, total_amount, step, reason, created_at, updated_at \
     FROM shop_order WHERE order_id = ?1";

const SELECT_PAYMENT_BY_ORDER: &str = "SELECT payment_id, order_id, total_amount, status, created_at FROM payment WHERE order_id = ?1";

impl WriteOp<Sqlite> for UpsertProduct {
    type Output = StockedProduct;

    fn apply<'c>(
        &'c self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<StockedProduct, StoreError>> {
        Box::pin(async move {
            let product = &self.0;
            let version: i64 = sqlx::query_scalar(
                "INSERT INTO product (product_id, product_name, price, stock, version, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, 1, ?5) \
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

impl WriteOp<Sqlite> for Reserve {
    type Output = ReserveOutcome;

    fn apply<'c>(
        &'c self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<ReserveOutcome, StoreError>> {
        Box::pin(async move {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT state FROM reservation WHERE order_id = ?1")
                    .bind(self.order_id.as_uuid())
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(state) = existing {
                return Ok(ReserveOutcome::AlreadyReserved(state.parse()?));
            }

            // The condition is the guard against overselling: the row changes only
            // if enough stock is there, whoever else is reserving.
            let taken = sqlx::query(
                "UPDATE product SET stock = stock - ?1, version = version + 1, updated_at = ?3 \
                 WHERE product_id = ?2 AND stock >= ?1 RETURNING stock, version",
            )
            .bind(i64::from(self.quantity))
            .bind(self.product_id.as_str())
            .bind(self.at)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = taken else {
                let available: Option<i64> =
                    sqlx::query_scalar("SELECT stock FROM product WHERE product_id = ?1")
                        .bind(self.product_id.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                return Ok(match available {
                    Some(units) => ReserveOutcome::Insufficient {
                        available: Stock::saturating(units),
                    },
                    None => ReserveOutcome::UnknownProduct,
                });
            };

            sqlx::query(
                "INSERT INTO reservation (order_id, product_id, quantity, state, updated_at) \
                 VALUES (?1, ?2, ?3, 'RESERVED', ?4)",
            )
            .bind(self.order_id.as_uuid())
            .bind(self.product_id.as_str())
            .bind(i64::from(self.quantity))
            .bind(self.at)
            .execute(&mut *conn)
            .await?;
            Ok(ReserveOutcome::Reserved(stock_level(
                self.product_id.clone(),
                &row,
            )?))
        })
    }
}

impl WriteOp<Sqlite> for CommitReservation {
    type Output = bool;

    fn apply<'c>(
        &'c self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE reservation SET state = ?1, updated_at = ?2 WHERE order_id = ?3 AND state = ?4",
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

impl WriteOp<Sqlite> for ReleaseReservation {
    type Output = Option<StockLevel>;

    fn apply<'c>(
        &'c self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<Option<StockLevel>, StoreError>> {
        Box::pin(async move {
            let released = sqlx::query(
                "UPDATE reservation SET state = ?1, updated_at = ?2 WHERE order_id = ?3 AND state = ?4 \
                 RETURNING product_id, quantity",
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
            let product_id = product_id(&released)?;
            let quantity: i64 = released.try_get("quantity")?;
            let row = sqlx::query(
                "UPDATE product SET stock = stock + ?1, version = version + 1, updated_at = ?2 \
                 WHERE product_id = ?3 RETURNING stock, version",
            )
            .bind(quantity)
            .bind(self.at)
            .bind(product_id.as_str())
            .fetch_one(&mut *conn)
            .await?;
            Ok(Some(stock_level(product_id, &row)?))
        })
    }
}

impl WriteOp<Sqlite> for NewOrder {
    type Output = CreateOrderOutcome;

    fn apply<'c>(
        &'c self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<CreateOrderOutcome, StoreError>> {
        Box::pin(async move {
            let key = self.idempotency_key.as_ref().map(|key| key.as_str());
            let inserted = sqlx::query(
                "INSERT INTO shop_order (order_id, product_id, quantity, total_amount, step, status, \
                 reason, idempotency_key, shopper_id, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?9, ?9) \
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
                let row = sqlx::query(
                    "SELECT order_id, product_id, quantity, total_amount, step, reason, created_at, updated_at \
                     FROM shop_order WHERE idempotency_key = ?1",
                )
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
                return Ok(CreateOrderOutcome::Existing(order(&row)?));
            }

            insert_event(conn, self.order_id, OrderStep::Placed, None, self.at).await?;
            Ok(CreateOrderOutcome::Created(Order {
                order_id: self.order_id,
                product_id: self.product_id.clone(),
                quantity: self.quantity,
                total_amount: self.total_amount,
                step: OrderStep::Placed,
                reason: None,
                created_at: self.at,
                updated_at: self.at,
            }))
        })
    }
}

impl WriteOp<Sqlite> for OrderTransition {
    type Output = Option<OrderEvent>;

    fn apply<'c>(
        &'c self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<Option<OrderEvent>, StoreError>> {
        Box::pin(async move {
            // Only a pending order moves, and never to the step it is already at:
            // re-driving a saga after a crash writes nothing twice.
            let moved = sqlx::query(
                "UPDATE shop_order SET step = ?1, status = ?2, reason = ?3, updated_at = ?4 \
                 WHERE order_id = ?5 AND status = 'PENDING' AND step <> ?1",
            )
            .bind(self.step.as_str())
            .bind(self.step.status().as_str())
            .bind(self.reason.as_deref())
            .bind(self.at)
            .bind(self.order_id.as_uuid())
            .execute(&mut *conn)
            .await?;
            if moved.rows_affected() == 0 {
                return Ok(None);
            }
            let seq = insert_event(
                conn,
                self.order_id,
                self.step,
                self.reason.as_deref(),
                self.at,
            )
            .await?;
            Ok(Some(OrderEvent {
                order_id: self.order_id,
                seq,
                step: self.step,
                reason: self.reason.clone(),
                at: self.at,
            }))
        })
    }
}

async fn insert_event(
    conn: &mut SqliteConnection,
    order_id: OrderId,
    step: OrderStep,
    reason: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<u32, StoreError> {
    let seq: u32 = sqlx::query_scalar(
        "INSERT INTO order_event (order_id, seq, step, status, reason, at) \
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM order_event WHERE order_id = ?1), ?2, ?3, ?4, ?5) \
         RETURNING seq",
    )
    .bind(order_id.as_uuid())
    .bind(step.as_str())
    .bind(step.status().as_str())
    .bind(reason)
    .bind(at)
    .fetch_one(conn)
    .await?;
    Ok(seq)
}

impl WriteOp<Sqlite> for RecordPayment {
    type Output = Payment;

    fn apply<'c>(
        &'c self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<Payment, StoreError>> {
        Box::pin(async move {
            let payment_row = &self.0;
            let inserted = sqlx::query(
                "INSERT INTO payment (payment_id, order_id, total_amount, status, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(payment_row.payment_id.as_uuid())
            .bind(payment_row.order_id.as_uuid())
            .bind(payment_row.total_amount.cents())
            .bind(payment_row.status.as_str())
            .bind(payment_row.created_at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(payment_row.clone());
            }
            let existing = sqlx::query(SELECT_PAYMENT_BY_ORDER)
                .bind(payment_row.order_id.as_uuid())
                .fetch_one(&mut *conn)
                .await?;
            payment(&existing)
        })
    }
}

// Rows to domain values. The schema's constraints were checked on the way in, so a
// failure here means the file was changed behind our back.

fn product_id(row: &SqliteRow) -> Result<ProductId, StoreError> {
    ProductId::parse(row.try_get::<String, _>("product_id")?).map_err(|e| corrupt("product_id", e))
}

fn stock_level(product_id: ProductId, row: &SqliteRow) -> Result<StockLevel, StoreError> {
    Ok(StockLevel {
        product_id,
        stock: Stock::saturating(row.try_get("stock")?),
        version: row.try_get("version")?,
    })
}

fn stocked_product(row: &SqliteRow) -> Result<StockedProduct, StoreError> {
    Ok(StockedProduct {
        product: Product {
            product_id: product_id(row)?,
            product_name: ProductName::parse(row.try_get::<String, _>("product_name")?)
                .map_err(|e| corrupt("product_name", e))?,
            price: Price::parse(row.try_get("price")?).map_err(|e| corrupt("price", e))?,
            stock: Stock::saturating(row.try_get("stock")?),
        },
        version: row.try_get("version")?,
    })
}

fn order(row: &SqliteRow) -> Result<Order, StoreError> {
    let step: String = row.try_get("step")?;
    Ok(Order {
        order_id: OrderId::from_uuid(row.try_get::<Uuid, _>("order_id")?),
        product_id: product_id(row)?,
        quantity: Quantity::parse(row.try_get("quantity")?).map_err(|e| corrupt("quantity", e))?,
        total_amount: Money::from_cents(row.try_get("total_amount")?),
        step: step.parse().map_err(|e| corrupt("step", e))?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn order_event(row: &SqliteRow) -> Result<OrderEvent, StoreError> {
    let step: String = row.try_get("step")?;
    Ok(OrderEvent {
        order_id: OrderId::from_uuid(row.try_get::<Uuid, _>("order_id")?),
        seq: row.try_get("seq")?,
        step: step.parse().map_err(|e| corrupt("step", e))?,
        reason: row.try_get("reason")?,
        at: row.try_get("at")?,
    })
}

fn payment(row: &SqliteRow) -> Result<Payment, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(Payment {
        payment_id: PaymentId::from_uuid(row.try_get::<Uuid, _>("payment_id")?),
        order_id: OrderId::from_uuid(row.try_get::<Uuid, _>("order_id")?),
        total_amount: Money::from_cents(row.try_get("total_amount")?),
        status: status
            .parse::<PaymentStatus>()
            .map_err(|e| corrupt("payment status", e))?,
        created_at: row.try_get("created_at")?,
    })
}
