//! The SQLite backend, the default: one write connection owned by the group-commit
//! writer, a read-only pool for everything else, WAL so that readers never block
//! the writer. One process owns the file, so nothing here coordinates with others.
//! `synchronous=NORMAL` (the default) survives a killed process but may lose the
//! last commits on power loss; `FULL` survives both, at the cost of an fsync per
//! commit.

use std::str::FromStr;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};

use super::StoreOptions;
use super::writer::Writer;

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

        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        MIGRATOR.run(&writes).await?;

        let reads = SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;

        Ok(SqliteStore {
            writer: Writer::spawn(writes, options.max_batch, 1),
            reads,
        })
    }

    pub(super) async fn write<W: WriteOp<Sqlite>>(&self, op: W) -> Result<W::Output, StoreError> {
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

super::sql::shared_sql!(db: Sqlite, conn: SqliteConnection, store: SqliteStore);

/// One process owns a SQLite file: its in-process broadcast reaches every watcher,
/// so there is no one else to tell.
async fn announce_event(_: &mut SqliteConnection, _: &OrderEvent) -> Result<(), StoreError> {
    Ok(())
}
