//! Managed Postgres is reached over TLS: the shop runs on a server that takes TLS
//! (a self-signed certificate) through `sslmode=require`, every connection it
//! makes is encrypted, and `sslmode=verify-full` with the certificate as
//! `sslrootcert` connects as well.

use sqlx::{Connection, PgConnection};

use support::postgres::Cluster;
use support::spawn_app_with;

/// Whether the connection to `url` is encrypted, as the server sees it.
async fn encrypted(url: &str) -> Result<bool, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let ssl = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(ssl)
}

#[actix_web::test]
async fn an_order_is_confirmed_on_postgres_over_tls() {
    let Some((cluster, certificate)) = Cluster::dedicated_tls() else {
        return;
    };
    let database_url = cluster.fresh_database().await;
    let require = format!("{database_url}?sslmode=require");
    let app = spawn_app_with(|config| config.database_url = require.clone()).await;

    app.stock_product("tls-tea", 300, 10).await;
    let order_id = app.order_id("tls-tea", 2).await;
    let order = app.until_terminal(&order_id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(app.stock_of("tls-tea").await, 8);

    // Every connection to the shop's database is encrypted: the app's pools and
    // change listener, and this one.
    let mut conn = PgConnection::connect(&require).await.expect("a connection");
    let (connections, encrypted_ones): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = current_database() AND a.backend_type = 'client backend'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the server's view of its connections");
    assert!(connections > 1, "the app is connected: {connections}");
    assert_eq!(encrypted_ones, connections, "every connection is encrypted");

    // The certificate checked, host name included.
    let verified = format!(
        "{database_url}?sslmode=verify-full&sslrootcert={}",
        certificate.display()
    );
    let verified_ssl = encrypted(&verified).await.map_err(|e| e.to_string());
    assert_eq!(verified_ssl, Ok(true), "{verified}");
    let unknown_root = format!("{database_url}?sslmode=verify-full");
    assert!(
        encrypted(&unknown_root).await.is_err(),
        "a self-signed certificate is not trusted without sslrootcert"
    );
}
