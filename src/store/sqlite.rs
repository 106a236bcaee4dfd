//! The SQLite backend, the default: one process owns the file. Writes go through
//! the group-commit writer on a pool of one connection (SQLite has one writer),
//! reads through a read-only pool, and WAL keeps readers and the writer apart.
//! `synchronous=NORMAL` (the default) survives a killed process but may lose the
//! last commits on power loss; `FULL` survives both, at the cost of an fsync per
//! commit.
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

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{ConnectOptions, Sqlite};

use super::dialect::Dialect;
use super::writer::Writer;
use super::{Changes, StoreError, StoreOptions};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

type Db = Sqlite;
const DIALECT: Dialect = Dialect::Sqlite;

// One body of writes, compiled for each backend with its own types.
#[allow(clippy::duplicate_mod)]
#[path = "batch.rs"]
mod batch;

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
    pub(super) writer: Writer,
    reads: SqlitePool,
    /// The checkpoint task runs while a handle to the store does.
    _alive: Arc<()>,
}

impl SqliteStore {
    pub(super) async fn open(options: &StoreOptions) -> Result<SqliteStore, StoreError> {
        let connect = connect_options(options)?;

        // The one write connection, which also migrates (and creates) the database.
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        MIGRATOR.run(&writes).await?;

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
            writer: Writer::spawn(writes, options.max_batch, 1),
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

/// One process owns the file, so its in-process broadcasts reach every watcher:
/// there is no one else to tell.
async fn announce(_: &mut SqliteConnection, _: &Changes) -> Result<(), StoreError> {
    Ok(())
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
                // Let the checkpointer run however busy the machine is.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let frame = 4096 + 24;
        let bytes = wal_bytes(&path);
        assert!(bytes < 2_000 * frame, "the WAL reached {bytes} bytes");
    }
}
