//! A throwaway Postgres for the tests: one cluster per test process, a fresh
//! database per test. `MINIMART_TEST_POSTGRES_URL`, when set, names a server to
//! use instead (its user must be allowed to create databases).
//!
//! The cluster lives in a temporary folder on a free loopback port. `initdb`
//! refuses to run as root, so as root it runs as `nobody`. A small shell keeper
//! owns the server: it waits on a pipe from this process, and when the pipe closes
//! (this process ended, however it ended) it stops the server and removes the
//! folder, so nothing is left behind.
//!
//! Without Postgres installed the suite is skipped with a loud message, except in
//! CI (`CI=true`), where that is a failure.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

struct Cluster {
    admin_url: String,
    /// Closing it (when the process ends) stops the server and removes its folder.
    _keeper: ChildStdin,
}

/// The URL of a new, empty database on the test server.
pub async fn fresh_database() -> String {
    let admin_url = admin_url();
    let name = format!("minimart_{}", uuid::Uuid::new_v4().simple());
    let mut conn = connect_when_ready(&admin_url).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("a test database");
    let _ = conn.close().await;
    // The same server and user, the new database.
    let (server, _database) = admin_url
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("://"))
        .unwrap_or_else(|| panic!("not a postgres://.../DATABASE URL: {admin_url}"));
    format!("{server}/{name}")
}

fn admin_url() -> String {
    if let Ok(url) = std::env::var("MINIMART_TEST_POSTGRES_URL") {
        return url;
    }
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER
        .get_or_init(|| match start_cluster() {
            Ok(cluster) => cluster,
            Err(why) => skip(&why),
        })
        .admin_url
        .clone()
}

/// Ends the test process, saying loudly why; in CI, fails instead.
fn skip(why: &str) -> ! {
    let message = format!(
        "Postgres is not available: the Postgres test suite cannot run ({why}; \
         apt-get install postgresql, or set MINIMART_TEST_POSTGRES_URL)"
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    // Straight to the process's stderr: the test harness would hide `eprintln!`.
    let _ = writeln!(std::io::stderr(), "\n!!! SKIPPED: {message} !!!\n");
    std::process::exit(0);
}

fn start_cluster() -> Result<Cluster, String> {
    let bin = postgres_bin_dir().ok_or("initdb and postgres were not found")?;
    let root = tempfile::Builder::new()
        .prefix("minimart-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = root.join("data");
    let as_user = unprivileged_user();
    if let Some((uid, gid)) = as_user {
        std::os::unix::fs::chown(&root, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }

    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args([
            "--auth=trust",
            "--username=minimart",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .arg("-D")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    run_as(&mut initdb, as_user);
    let made = initdb.output().map_err(|e| format!("initdb: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }

    let port = free_port();
    // The keeper: starts the server, waits for its stdin to close, then stops the
    // server (fast shutdown) and removes the folder. Durability settings are off:
    // a test cluster that dies is thrown away anyway.
    let script = r#"
        "$1/postgres" -D "$2/data" -p "$3" -k "$2" -c listen_addresses=127.0.0.1 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=300 >"$2/server.log" 2>&1 &
        server=$!
        cat >/dev/null
        kill -INT "$server"
        wait "$server"
        rm -rf "$2"
    "#;
    let mut keeper = Command::new("sh");
    keeper
        .args(["-c", script, "keeper"])
        .arg(&bin)
        .arg(&root)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run_as(&mut keeper, as_user);
    let mut child = keeper.spawn().map_err(|e| format!("postgres: {e}"))?;
    let stdin = child.stdin.take().ok_or("no pipe to the keeper")?;
    Ok(Cluster {
        admin_url: format!("postgres://minimart@127.0.0.1:{port}/postgres"),
        _keeper: stdin,
    })
}

/// The folder holding `initdb` and `postgres`: on the PATH, or Debian's newest.
fn postgres_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .find(|candidate| candidate.is_file())
            .and_then(|initdb| std::fs::canonicalize(initdb).ok())
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
    });
    let debian = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        dirs.sort_by_key(|dir| {
            dir.parent()
                .and_then(|version| version.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
        });
        dirs.pop()
    };
    on_path
        .filter(|dir| dir.join("postgres").is_file())
        .or_else(debian)
}

/// As root, the user the cluster runs as (`initdb` refuses root).
fn unprivileged_user() -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("a user named nobody to run Postgres as");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn run_as(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid).env("HOME", "/tmp");
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

async fn connect_when_ready(url: &str) -> PgConnection {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match PgConnection::connect(url).await {
            Ok(conn) => return conn,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "the test Postgres did not come up: {error}"
                );
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
