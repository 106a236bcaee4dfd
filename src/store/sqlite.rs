//! The SQLite backend, the default: one write connection, owned by the writer
//! thread (`sqlite_writer`), a read-only sqlx pool for everything else, WAL so that
//! readers never block the writer. One process owns the file, so nothing here
//! coordinates with others. `synchronous=NORMAL` (the default) survives a killed
//! process but may lose the last commits on power loss; `FULL` survives both, at
//! the cost of an fsync per commit.
//!
//! The reads are the shared ones (`sql`). The writes are written out here for
//! rusqlite, which the writer thread drives synchronously, one hop per batch
//! rather than one per statement. They write what Postgres' writes in `sql` write,
//! with two differences of form: parameters are numbered `?N` (rusqlite's `$N`
//! would be a named parameter), and the hot path has no `RETURNING`, which SQLite
//! runs through a temporary table: a row is read back instead. Values are bound
//! as sqlx-sqlite stores them, so that the reads decode them: UUIDs as 16-byte
//! blobs, times as RFC 3339 text ([`time`]).

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use uuid::Uuid;

use super::rows::{OrderRow, PaymentRow, ReleasedRow, StockRow};
use super::sqlite_writer::{SqliteWrite, SqliteWriter, WriterOptions};
use super::{
    CommitReservation, CreateOrderOutcome, NewOrder, OrderTransition, RecordPayment,
    ReleaseReservation, ReservationState, Reserve, ReserveOutcome, StockLevel, StockedProduct,
    StoreError, StoreOptions, UpsertProduct,
};
use crate::domain::{Order, OrderEvent, OrderId, OrderStep, Payment, Stock};

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
    writer: SqliteWriter,
    reads: SqlitePool,
}

impl SqliteStore {
    pub(super) async fn open(options: &StoreOptions) -> Result<SqliteStore, StoreError> {
        let connect = connect_options(options)?;

        // sqlx migrates (and creates) the database, then leaves it to the writer.
        let migrates = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        MIGRATOR.run(&migrates).await?;
        migrates.close().await;

        let writer = SqliteWriter::spawn(WriterOptions {
            path: connect.get_filename().to_owned(),
            synchronous: match options.sqlite_synchronous {
                SqliteSynchronous::Normal => "NORMAL",
                SqliteSynchronous::Full => "FULL",
            },
            busy_timeout: options.acquire_timeout,
            max_batch: options.max_batch,
            checkpoint_every: WriterOptions::CHECKPOINT_EVERY,
            wal_limit_pages: WriterOptions::WAL_LIMIT_PAGES,
        })
        .await?;

        let reads = SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;

        Ok(SqliteStore { writer, reads })
    }

    pub(super) async fn write<W: SqliteWrite>(&self, op: W) -> Result<W::Output, StoreError> {
        self.writer.write(op).await
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

super::sql::shared_reads!(store: SqliteStore);

/// A time as sqlx-sqlite encodes a `DateTime<Utc>`, so that it reads it back.
fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A UUID as sqlx-sqlite encodes it: its 16 bytes.
fn blob(id: Uuid) -> [u8; 16] {
    id.into_bytes()
}

impl SqliteWrite for UpsertProduct {
    type Output = StockedProduct;

    fn apply(&self, tx: &Transaction<'_>) -> Result<StockedProduct, StoreError> {
        let product = &self.0;
        let version: i64 = tx
            .prepare_cached(
                "INSERT INTO product (product_id, product_name, price, stock, version, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, 1, ?5) \
                 ON CONFLICT (product_id) DO UPDATE SET product_name = excluded.product_name, \
                 price = excluded.price, stock = excluded.stock, version = product.version + 1, \
                 updated_at = excluded.updated_at \
                 RETURNING version",
            )?
            .query_row(
                params![
                    product.product_id.as_str(),
                    product.product_name.as_str(),
                    product.price.money().cents(),
                    product.stock.units(),
                    time(&Utc::now()),
                ],
                |row| row.get(0),
            )?;
        Ok(StockedProduct {
            product: product.clone(),
            version,
        })
    }
}

impl SqliteWrite for Reserve {
    type Output = ReserveOutcome;

    fn apply(&self, tx: &Transaction<'_>) -> Result<ReserveOutcome, StoreError> {
        let existing: Option<String> = tx
            .prepare_cached("SELECT state FROM reservation WHERE order_id = ?1")?
            .query_row([blob(self.order_id.as_uuid())], |row| row.get(0))
            .optional()?;
        if let Some(state) = existing {
            return Ok(ReserveOutcome::AlreadyDecided(state.parse()?));
        }

        // The condition is the guard against overselling: the row changes only if
        // enough stock is there. (No RETURNING: SQLite runs it through a temporary
        // table, which costs more than reading the row again.)
        let changed = tx
            .prepare_cached(
                "UPDATE product SET stock = stock - ?1, version = version + 1, updated_at = ?3 \
                 WHERE product_id = ?2 AND stock >= ?1",
            )?
            .execute(params![
                i64::from(self.quantity),
                self.product_id.as_str(),
                time(&self.at)
            ])?;
        if changed == 0 {
            let available: Option<i64> = tx
                .prepare_cached("SELECT stock FROM product WHERE product_id = ?1")?
                .query_row([self.product_id.as_str()], |row| row.get(0))
                .optional()?;
            let Some(units) = available else {
                return Ok(ReserveOutcome::UnknownProduct);
            };
            self.record(tx, ReservationState::Refused)?;
            return Ok(ReserveOutcome::Insufficient {
                available: Stock::saturating(units),
            });
        }
        self.record(tx, ReservationState::Reserved)?;
        let taken = stock_row(tx, self.product_id.as_str())?;
        Ok(ReserveOutcome::Reserved(
            taken.level(self.product_id.clone()),
        ))
    }
}

impl Reserve {
    /// Records the order's reservation, reserved or refused. The primary key on
    /// the order id is the backstop: a second one for the order fails here, and
    /// its transaction, with any stock it took, is rolled back.
    fn record(&self, tx: &Transaction<'_>, state: ReservationState) -> Result<(), StoreError> {
        tx.prepare_cached(
            "INSERT INTO reservation (order_id, product_id, quantity, state, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            blob(self.order_id.as_uuid()),
            self.product_id.as_str(),
            i64::from(self.quantity),
            state.as_str(),
            time(&self.at),
        ])?;
        Ok(())
    }
}

impl SqliteWrite for CommitReservation {
    type Output = bool;

    fn apply(&self, tx: &Transaction<'_>) -> Result<bool, StoreError> {
        let done = tx
            .prepare_cached(
                "UPDATE reservation SET state = ?1, updated_at = ?2 \
                 WHERE order_id = ?3 AND state = ?4",
            )?
            .execute(params![
                ReservationState::Committed.as_str(),
                time(&self.at),
                blob(self.order_id.as_uuid()),
                ReservationState::Reserved.as_str(),
            ])?;
        Ok(done == 1)
    }
}

impl SqliteWrite for ReleaseReservation {
    type Output = Option<StockLevel>;

    fn apply(&self, tx: &Transaction<'_>) -> Result<Option<StockLevel>, StoreError> {
        let released = tx
            .prepare_cached(
                "SELECT product_id, quantity FROM reservation WHERE order_id = ?1 AND state = ?2",
            )?
            .query_row(
                params![
                    blob(self.order_id.as_uuid()),
                    ReservationState::Reserved.as_str(),
                ],
                ReleasedRow::from_sqlite,
            )
            .optional()?;
        let Some(released) = released else {
            return Ok(None);
        };
        tx.prepare_cached(
            "UPDATE reservation SET state = ?1, updated_at = ?2 WHERE order_id = ?3",
        )?
        .execute(params![
            ReservationState::Released.as_str(),
            time(&self.at),
            blob(self.order_id.as_uuid()),
        ])?;
        let product_id = released.product_id()?;
        tx.prepare_cached(
            "UPDATE product SET stock = stock + ?1, version = version + 1, updated_at = ?2 \
             WHERE product_id = ?3",
        )?
        .execute(params![
            released.quantity,
            time(&self.at),
            product_id.as_str()
        ])?;
        let row = stock_row(tx, product_id.as_str())?;
        Ok(Some(row.level(product_id)))
    }
}

/// A product's stock and version as this transaction sees them.
fn stock_row(tx: &Transaction<'_>, product_id: &str) -> Result<StockRow, StoreError> {
    Ok(tx
        .prepare_cached("SELECT stock, version FROM product WHERE product_id = ?1")?
        .query_row([product_id], StockRow::from_sqlite)?)
}

impl SqliteWrite for NewOrder {
    type Output = CreateOrderOutcome;

    fn apply(&self, tx: &Transaction<'_>) -> Result<CreateOrderOutcome, StoreError> {
        let key = self.idempotency_key.as_ref().map(|key| key.as_str());
        // An order with the same key makes this one do nothing; the order it made
        // is then read back below.
        let inserted = tx
            .prepare_cached(
                "INSERT INTO shop_order (order_id, product_id, quantity, total_amount, step, \
                 status, reason, idempotency_key, shopper_id, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?9, ?9) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )?
            .execute(params![
                blob(self.order_id.as_uuid()),
                self.product_id.as_str(),
                i64::from(self.quantity),
                self.total_amount.cents(),
                OrderStep::Placed.as_str(),
                OrderStep::Placed.status().as_str(),
                key,
                self.shopper_id.map(|shopper| blob(shopper.as_uuid())),
                time(&self.at),
            ])?;

        if inserted == 0 {
            let row = tx
                .prepare_cached(
                    "SELECT order_id, product_id, quantity, total_amount, step, reason, \
                     created_at, updated_at FROM shop_order WHERE idempotency_key = ?1",
                )?
                .query_row([key], OrderRow::from_sqlite)?;
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
        record_event(tx, self.order_id, 1, OrderStep::Placed, None, self.at)?;
        Ok(CreateOrderOutcome::Created(order))
    }
}

impl SqliteWrite for OrderTransition {
    type Output = Option<OrderEvent>;

    fn apply(&self, tx: &Transaction<'_>) -> Result<Option<OrderEvent>, StoreError> {
        // An order moves only along an arrow of the saga, from the step before
        // this one: a repeated or late transition (a saga driven again, or two
        // runs of one saga) moves nothing.
        let Some(from) = self.step.previous() else {
            return Ok(None);
        };
        let moved = tx
            .prepare_cached(
                "UPDATE shop_order SET step = ?1, status = ?2, reason = ?3, updated_at = ?4 \
                 WHERE order_id = ?5 AND step = ?6",
            )?
            .execute(params![
                self.step.as_str(),
                self.step.status().as_str(),
                self.reason.as_deref(),
                time(&self.at),
                blob(self.order_id.as_uuid()),
                from.as_str(),
            ])?;
        if moved == 0 {
            return Ok(None);
        }
        let event = record_event(
            tx,
            self.order_id,
            next_event_seq(tx, self.order_id)?,
            self.step,
            self.reason.as_deref(),
            self.at,
        )?;
        Ok(Some(event))
    }
}

/// The number of the order's next event: a new order's first is 1. Read apart
/// from the insert because an `INSERT … RETURNING` goes through a temporary table
/// in SQLite, which costs more than this lookup.
fn next_event_seq(tx: &Transaction<'_>, order_id: OrderId) -> Result<i64, StoreError> {
    Ok(tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM order_event WHERE order_id = ?1")?
        .query_row([blob(order_id.as_uuid())], |row| row.get(0))?)
}

/// Appends event number `seq` to the order's outbox. One process owns the file,
/// so its in-process broadcast reaches every watcher: there is no one else to tell.
fn record_event(
    tx: &Transaction<'_>,
    order_id: OrderId,
    seq: i64,
    step: OrderStep,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<OrderEvent, StoreError> {
    tx.prepare_cached(
        "INSERT INTO order_event (order_id, seq, step, status, reason, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        blob(order_id.as_uuid()),
        seq,
        step.as_str(),
        step.status().as_str(),
        reason,
        time(&at),
    ])?;
    Ok(OrderEvent {
        order_id,
        seq: u32::try_from(seq).map_err(|e| super::corrupt("seq", e))?,
        step,
        reason: reason.map(str::to_owned),
        at,
    })
}

impl SqliteWrite for RecordPayment {
    type Output = Payment;

    fn apply(&self, tx: &Transaction<'_>) -> Result<Payment, StoreError> {
        let payment = &self.0;
        let inserted = tx
            .prepare_cached(
                "INSERT INTO payment (payment_id, order_id, total_amount, status, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (order_id) DO NOTHING",
            )?
            .execute(params![
                blob(payment.payment_id.as_uuid()),
                blob(payment.order_id.as_uuid()),
                payment.total_amount.cents(),
                payment.status.as_str(),
                time(&payment.created_at),
            ])?;
        if inserted == 1 {
            return Ok(payment.clone());
        }
        let existing = tx
            .prepare_cached(
                "SELECT payment_id, order_id, total_amount, status, created_at FROM payment \
                 WHERE order_id = ?1",
            )?
            .query_row([blob(payment.order_id.as_uuid())], PaymentRow::from_sqlite)?;
        Payment::try_from(existing)
    }
}
