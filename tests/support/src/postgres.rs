//! A throwaway Postgres for the tests: one cluster per test process, a fresh
//! database per test. `MINIMART_TEST_POSTGRES_URL`, when set, names a server to
//! use instead (its user must be allowed to create databases).
//!
//! A cluster lives in a temporary folder on a free loopback port. `initdb` refuses
//! to run as root, so as root it runs as `nobody`. A small shell keeper owns the
//! server: it takes `stop` and `start` commands on a pipe from this process, and
//! when the pipe closes (the cluster was dropped, or this process ended, however it
//! ended) it stops the server and removes the folder, so nothing is left behind.
//! A test that restarts its server gets a [`Cluster`] of its own, and so does one
//! that needs TLS (a self-signed certificate made with the `openssl` command).
//!
//! Without Postgres installed the Postgres tests are skipped with a loud message,
//! except in CI (`CI=true`), where that is a failure (see [`crate::skip`]).

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::{free_port, skip};

/// A Postgres server of the tests' own, stopped and removed when dropped (or when
/// the process ends).
pub struct Cluster {
    admin_url: String,
    /// The server's certificate, when it takes TLS connections.
    certificate: Option<PathBuf>,
    /// Commands to the keeper (`stop`, `start`); closing it (when the process
    /// ends) stops the server and removes its folder. `None` for a server that
    /// someone else runs (`MINIMART_TEST_POSTGRES_URL`).
    keeper: Option<ChildStdin>,
}

impl Cluster {
    /// A cluster for one test that needs to stop and start its server; `None`
    /// (after saying so loudly) when Postgres is not installed. In CI that fails.
    pub fn dedicated() -> Option<Cluster> {
        match start_cluster(false) {
            Ok(cluster) => Some(cluster),
            Err(why) => {
                say_unavailable(&why);
                None
            }
        }
    }

    /// A dedicated cluster that also takes TLS connections (`ssl=on`), with a
    /// self-signed certificate for `localhost` and 127.0.0.1, and the path of that
    /// certificate (for `sslrootcert`). `None` (after saying so loudly) when
    /// Postgres or the openssl command is missing. In CI that fails.
    pub fn dedicated_tls() -> Option<(Cluster, PathBuf)> {
        if Command::new("openssl").arg("version").output().is_err() {
            skip(
                "openssl is not installed: the Postgres TLS test cannot run (apt-get install openssl)",
            );
            return None;
        }
        let cluster = match start_cluster(true) {
            Ok(cluster) => cluster,
            Err(why) => {
                say_unavailable(&why);
                return None;
            }
        };
        let certificate = cluster.certificate.clone()?;
        Some((cluster, certificate))
    }

    /// The URL of a new, empty database on this server.
    pub async fn fresh_database(&self) -> String {
        let name = format!("minimart_{}", uuid::Uuid::new_v4().simple());
        let mut conn = connect_when_ready(&self.admin_url).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("a test database");
        let _ = conn.close().await;
        // The same server and user, the new database.
        let (server, _database) = self
            .admin_url
            .rsplit_once('/')
            .filter(|(server, _)| server.contains("://"))
            .unwrap_or_else(|| panic!("not a postgres://.../DATABASE URL: {}", self.admin_url));
        format!("{server}/{name}")
    }

    /// Stops the server (fast shutdown: every connection is cut), and waits until
    /// it has stopped listening.
    pub fn stop(&mut self) {
        self.tell_keeper("stop");
        let address = self.admin_url.split(['@', '/']).nth(3).expect("host:port");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(address).is_ok() {
            assert!(Instant::now() < deadline, "the test Postgres did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the stopped server again, and waits until it accepts connections.
    pub async fn start(&mut self) {
        self.tell_keeper("start");
        let _ = connect_when_ready(&self.admin_url).await.close().await;
    }
}

/// The URL of a new, empty database on the test server shared by this process.
pub async fn fresh_database() -> String {
    let cluster = shared()
        .as_ref()
        .expect("a test on Postgres runs through `run_on`");
    cluster.fresh_database().await
}

/// Whether the shared server is there; when it is not, skips the running test
/// (loudly; in CI that fails).
pub fn available() -> bool {
    shared()
        .as_ref()
        .map_err(|why| say_unavailable(why))
        .is_ok()
}

fn shared() -> &'static Result<Cluster, String> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    CLUSTER.get_or_init(|| match std::env::var("MINIMART_TEST_POSTGRES_URL") {
        Ok(url) => Ok(Cluster::external(url)),
        Err(_) => start_cluster(false),
    })
}

impl Cluster {
    /// A server someone else runs.
    fn external(admin_url: String) -> Cluster {
        Cluster {
            admin_url,
            certificate: None,
            keeper: None,
        }
    }

    fn tell_keeper(&mut self, command: &str) {
        let keeper = self
            .keeper
            .as_mut()
            .expect("only a cluster of the tests' own can be stopped and started");
        writeln!(keeper, "{command}").expect("the keeper listens");
    }
}

/// Says loudly that Postgres tests cannot run; in CI, fails instead.
fn say_unavailable(why: &str) {
    skip(&format!(
        "Postgres is not available: the Postgres tests cannot run ({why}; \
         apt-get install postgresql, or set MINIMART_TEST_POSTGRES_URL)"
    ));
}

/// Starts a cluster; with `tls`, it takes TLS connections too (`ssl=on`), with a
/// certificate made here (`server.crt` and `server.key`, Postgres' default names,
/// in its data folder).
fn start_cluster(tls: bool) -> Result<Cluster, String> {
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
        .arg(&data);
    run_to_end(&mut initdb, as_user, "initdb")?;

    let certificate = if tls {
        Some(make_certificate(&data, as_user)?)
    } else {
        None
    };

    let port = free_port();
    // The keeper: starts the server, then obeys `stop` and `start` lines on its
    // stdin; when stdin closes it stops the server (fast shutdown) and removes the
    // folder. Durability settings are off: a test cluster that dies is thrown away.
    let script = r#"
        bin=$1 root=$2 port=$3 ssl=$4
        serve() {
            "$bin/postgres" -D "$root/data" -p "$port" -k "$root" -c listen_addresses=127.0.0.1 \
                -c ssl="$ssl" -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                -c max_connections=300 >>"$root/server.log" 2>&1 &
            server=$!
        }
        halt() { kill -INT "$server" 2>/dev/null; wait "$server"; }
        serve
        while read -r command; do
            case "$command" in
                stop) halt ;;
                start) serve ;;
            esac
        done
        halt
        rm -rf "$root"
    "#;
    let mut keeper = Command::new("sh");
    keeper
        .args(["-c", script, "keeper"])
        .arg(&bin)
        .arg(&root)
        .arg(port.to_string())
        .arg(if tls { "on" } else { "off" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run_as(&mut keeper, as_user);
    let mut child = keeper.spawn().map_err(|e| format!("postgres: {e}"))?;
    let stdin = child.stdin.take().ok_or("no pipe to the keeper")?;
    Ok(Cluster {
        admin_url: format!("postgres://minimart@127.0.0.1:{port}/postgres"),
        certificate,
        keeper: Some(stdin),
    })
}

/// A self-signed certificate for `localhost` and 127.0.0.1, valid for a day, and
/// its key, in the data folder, owned by the cluster's user (Postgres refuses a
/// key that others may read). Answers the certificate's path.
fn make_certificate(data: &Path, as_user: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let (certificate, key) = (data.join("server.crt"), data.join("server.key"));
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // Not a CA (openssl's default for -x509): rustls refuses a CA certificate
        // as the server's own, even as its own root (`sslmode=verify-full`).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate);
    run_to_end(&mut openssl, as_user, "openssl req")?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    Ok(certificate)
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

/// Runs `command` (`what`) as `user` to its end; what it wrote to stderr when
/// it fails.
fn run_to_end(command: &mut Command, user: Option<(u32, u32)>, what: &str) -> Result<(), String> {
    run_as(command.stdout(Stdio::null()).stderr(Stdio::piped()), user);
    let made = command.output().map_err(|e| format!("{what}: {e}"))?;
    let stderr = String::from_utf8_lossy(&made.stderr);
    (made.status.success().then_some(())).ok_or_else(|| format!("{what} failed: {stderr}"))
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
