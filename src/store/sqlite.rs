//! The SQLite backend, the default: one process owns the file. Writes go through
//! the group-commit writer on a thread of its own, which owns the one write
//! connection through rusqlite and runs a whole batch itself, BEGIN to COMMIT,
//! with statements it keeps prepared: sqlx-sqlite runs each statement on a worker
//! thread of its own and hands every row across, which made the writer the limit.
//! Reads go through a read-only sqlx pool, and WAL keeps readers and the writer
//! apart. `synchronous=NORMAL` (the default) survives a killed process but may
//! lose the last commits on power loss; `FULL` survives both, at the cost of an
//! fsync per commit.
//!
//! Checkpoints (copying the WAL back into the database file) run on a connection
//! of their own, never inside a commit: SQLite's automatic checkpoint would run
//! one every 1,000 pages with its two fsyncs (15-40 ms on this kind of disk)
//! while every queued write waits. A background task checkpoints every few
//! milliseconds without blocking anyone, back to back while the WAL is past a
//! limit; SQLite starts the WAL over only when a write begins with all of it
//! copied, so when writes leave no such pause and the WAL reaches eight times the
//! limit, the task waits for its turn between two commits (`RESTART`) and copies
//! the rest.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::OpenFlags;
use rusqlite::types::ValueRef;
use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use uuid::Uuid;

use futures_util::future::BoxFuture;

use super::dialect::{self, Dialect};
use super::writer::{self, Cells, FromCells, Tx, Writer};
use super::{Changes, StoreError, StoreOptions};
use serde::Serialize;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How hard SQLite works to make a commit durable. (The command line names these
/// `normal` and `full`: see `crate::config`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// Durable against a crashed or killed process; the last commits may be lost on power loss.
    Normal,
    /// Durable against power loss too: one fsync per commit.
    Full,
}

#[derive(Clone)]
pub(super) struct SqliteStore {
    pub(super) writer: Writer,
    pub(super) reads: SqlitePool,
    /// The checkpoint task runs while a handle to the store does.
    _alive: Arc<()>,
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
        let writer = spawn_writer(&connect, options)?;

        let reads = SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone().read_only(true))
            .await?;

        let alive = Arc::new(());
        let checkpoints = connect.connect().await?;
        tokio::spawn(checkpoint(
            checkpoints,
            Arc::downgrade(&alive),
            Wal::default(),
        ));

        Ok(SqliteStore {
            writer,
            reads,
            _alive: alive,
        })
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

/// Opens the write connection and starts the writer's thread, which serves every
/// write until all handles are dropped. The connection: WAL, so the read pool
/// never blocks it; `synchronous` as configured; foreign keys on, as sqlx has them
/// on the reads; no automatic checkpoints (see the module doc).
pub(super) fn spawn_writer(
    connect: &SqliteConnectOptions,
    options: &StoreOptions,
) -> Result<Writer, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        connect.get_filename(),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(options.acquire_timeout)?;
    let synchronous = match options.sqlite_synchronous {
        SqliteSynchronous::Normal => "NORMAL",
        SqliteSynchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A batch's rows arrive as a VALUES list (see `dialect`), whose size SQLite
    // knows: with automatic indexes it would rather index the list and scan a
    // whole table than look the list's keys up in the table's own index.
    conn.pragma_update(None, "automatic_index", "OFF")?;
    // Each statement in a few sizes (see `dialect`).
    conn.set_prepared_statement_cache_capacity(256);
    let max_batch = options.max_batch.max(1);
    let (writer, mut queue) = Writer::channel(max_batch);
    // The batch is written once, async, for both backends; here every statement
    // completes at once, so a current-thread runtime only polls it through.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(StoreError::WriterStart)?;
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            let mut conn = conn;
            let mut batch = Vec::with_capacity(max_batch);
            while queue.blocking_recv_many(&mut batch, max_batch) > 0 {
                runtime.block_on(writer::commit(&mut conn, &mut batch));
            }
            tracing::debug!("sqlite writer stopped: every store handle is gone");
        })
        .map_err(StoreError::WriterStart)?;
    Ok(writer)
}

impl Tx for rusqlite::Connection {
    const DIALECT: Dialect = Dialect::Sqlite;

    /// `IMMEDIATE` takes the write lock at once. A transaction left open (a
    /// ROLLBACK that failed) is rolled back first, or every later batch would fail.
    fn begin(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        let begun = (|| {
            if !self.is_autocommit() {
                self.execute_batch("ROLLBACK")?;
            }
            Ok(self.execute_batch("BEGIN IMMEDIATE")?)
        })();
        Box::pin(std::future::ready(begun))
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { Ok(self.execute_batch("COMMIT")?) })
    }

    fn rollback(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { Ok(self.execute_batch("ROLLBACK")?) })
    }

    fn execute<'a, I: Serialize + Sync>(
        &'a mut self,
        template: &'static str,
        rows: &'a [I],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let executed = (|| {
            for (sql, values) in dialect::sqlite(template, rows)? {
                self.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(values))?;
            }
            Ok(())
        })();
        Box::pin(std::future::ready(executed))
    }

    fn fetch<'a, R: FromCells + Send + 'static, I: Serialize + Sync>(
        &'a mut self,
        template: &'static str,
        rows: &'a [I],
    ) -> BoxFuture<'a, Result<Vec<R>, StoreError>> {
        let fetched = (|| {
            let mut decoded = Vec::new();
            for (sql, values) in dialect::sqlite(template, rows)? {
                let mut statement = self.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(values))?;
                while let Some(row) = rows.next()? {
                    decoded.push(R::from_cells(row)?);
                }
            }
            Ok(decoded)
        })();
        Box::pin(std::future::ready(fetched))
    }

    /// One process owns the file, so its in-process broadcasts reach every
    /// watcher: there is no one else to tell.
    fn announce<'a>(&'a mut self, _: &'a Changes) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Ok(()) })
    }
}

/// Columns as sqlx-sqlite stores them, so that both drivers read the same
/// values: a UUID as its 16 bytes, a time as RFC 3339 text.
impl Cells for rusqlite::Row<'_> {
    fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(column)?)
    }
    fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(column)?)
    }
    fn uuid(&self, column: usize) -> Result<Option<Uuid>, StoreError> {
        match self.get_ref(column)? {
            ValueRef::Null => Ok(None),
            value => (value.as_blob().map_err(|e| super::corrupt("a UUID", e)))
                .and_then(|bytes| Uuid::from_slice(bytes).map_err(|e| super::corrupt("a UUID", e)))
                .map(Some),
        }
    }
    fn time(&self, column: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.get_ref(column)? {
            ValueRef::Null => Ok(None),
            value => (value.as_str().map_err(|e| super::corrupt("a time", e)))
                .and_then(|text| {
                    DateTime::parse_from_rfc3339(text).map_err(|e| super::corrupt("a time", e))
                })
                .map(|at| Some(at.with_timezone(&Utc))),
        }
    }
}

/// How the checkpoints keep the WAL short.
#[derive(Debug, Clone, Copy)]
struct Wal {
    /// How often a checkpoint runs, so that each has little to sync.
    every: Duration,
    /// Pages past which checkpoints run back to back; past eight times this,
    /// one waits for its turn between commits and copies everything.
    limit_pages: i64,
}

impl Default for Wal {
    /// Chosen with the load benchmark at 2,000 orders/s: the order POST's p99 was
    /// 12-13 ms with limits of 4 to 32 MB, 18 ms with checkpoints 100 ms apart,
    /// 24 ms with a 64 MB limit, and 50 ms when the writer was held at 16 MB.
    fn default() -> Self {
        Wal {
            every: Duration::from_millis(20),
            limit_pages: 4_096,
        }
    }
}

async fn checkpoint(mut conn: SqliteConnection, alive: Weak<()>, wal: Wal) {
    let mut pause = wal.every;
    loop {
        tokio::time::sleep(pause).await;
        if alive.strong_count() == 0 {
            return;
        }
        pause = wal.every;
        let passive: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await;
        let (pages, copied) = match passive {
            Ok((0, pages, copied)) => (pages, copied),
            // Another checkpoint was running.
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(error = %error, "WAL checkpoint failed");
                continue;
            }
        };
        if pages > wal.limit_pages.saturating_mul(8) && copied < pages {
            // Writes leave no pause: wait for one between two commits.
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(&mut conn)
                .await
            {
                tracing::warn!(error = %error, "WAL checkpoint failed");
            }
        } else if pages > wal.limit_pages && copied < pages {
            // Past the limit, go again at once until one finds everything
            // copied; the next write then starts the WAL over.
            pause = Duration::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Price, Product, ProductId, ProductName, Stock};
    use crate::store::Store;

    /// The WAL file's length: it grows, and is never cut back here, so this is
    /// the most the WAL has held.
    fn wal_bytes(path: &std::path::Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    #[tokio::test]
    async fn the_wal_starts_over_under_steady_writes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("wal.db");
        let options = StoreOptions::new(format!("sqlite://{}", path.display()));
        let store = Store::open(&options).await.expect("a store");
        // A checkpointer with a small limit beside the store's own: the WAL must
        // start over near eight times that limit, however steady the writes.
        let alive = Arc::new(());
        let conn = connect_options(&options)
            .expect("options")
            .connect()
            .await
            .expect("a connection");
        let wal = Wal {
            every: Duration::from_millis(5),
            limit_pages: 64,
        };
        tokio::spawn(checkpoint(conn, Arc::downgrade(&alive), wal));
        // Each commit writes a page or two: some 6,000 pages in all, which a WAL
        // that never started over would hold.
        for written in 0..3_000u32 {
            let product = Product {
                product_id: ProductId::parse(format!("p-{}", written % 300)).expect("an id"),
                product_name: ProductName::parse(format!("Product {written}")).expect("a name"),
                price: Price::parse(100).expect("a price"),
                stock: Stock::parse(1).expect("stock"),
            };
            store.upsert_product(product).await.expect("committed");
            if written % 100 == 0 {
                // Let the checkpointer run however busy the machine is: its
                // connection's worker thread must get the CPU too (CI once saw
                // 10 ms fall short while other builds ran).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let frame = 4096 + 24;
        let bytes = wal_bytes(&path);
        assert!(bytes < 2_000 * frame, "the WAL reached {bytes} bytes");
    }
}
