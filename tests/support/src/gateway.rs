//! The real minimart binary and nginx running the checked-in `gateway.conf`, each
//! on a free loopback port in a temporary folder, both stopped when dropped.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::postgres::Cluster;
use crate::{ADMIN_TOKEN, free_port, put_product_at, skip};

/// The checked-in configuration, exactly as `nginx -p "$PWD" -c gateway.conf` runs it.
pub const GATEWAY_CONF: &str = include_str!("../../../gateway.conf");
const LISTEN: &str = "listen 127.0.0.1:8000;";
const UPSTREAM_SERVER: &str = "server 127.0.0.1:8080;";

/// The nginx binary, or `None` (after saying so loudly) when it is not installed.
/// In CI a missing nginx fails the test instead.
pub fn nginx() -> Option<PathBuf> {
    // Debian puts it in /usr/sbin, which is not on an ordinary user's PATH.
    program(&["nginx", "/usr/sbin/nginx"], "-v", "nginx")
}

/// The openssl command line tool, or `None` (after saying so loudly), as [`nginx`].
pub fn openssl() -> Option<PathBuf> {
    program(&["openssl"], "version", "openssl")
}

/// Prometheus (Debian's `prometheus` package), or `None` (after saying so
/// loudly), as [`nginx`].
pub fn prometheus() -> Option<PathBuf> {
    program(
        &["prometheus", "/usr/bin/prometheus"],
        "--version",
        "prometheus",
    )
}

/// The first of `candidates` that runs `version_arg` successfully. When none
/// does: a failure in CI, a loud skip elsewhere.
fn program(candidates: &[&str], version_arg: &str, package: &str) -> Option<PathBuf> {
    let found = (candidates.iter()).find(|candidate| installed(candidate, version_arg));
    if found.is_none() {
        skip(&format!(
            "{package} is not installed: the gateway and ops tests that need it cannot run \
             (apt-get install {package})"
        ));
    }
    found.map(PathBuf::from)
}

/// Whether `program` is there: it runs `version_arg` successfully.
pub fn installed(program: &str, version_arg: &str) -> bool {
    (Command::new(program).arg(version_arg))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A folder to use as nginx's prefix, laid out as the repository is: the
/// configuration at the top, and `.gateway/` for what nginx writes.
pub fn prefix_with(conf: &str) -> TempDir {
    let prefix = tempfile::tempdir().expect("a temporary directory");
    // Run as root (CI), nginx's workers drop to `nobody`, who must be able to
    // reach the temporary folders nginx makes for them inside the prefix.
    std::fs::set_permissions(prefix.path(), std::fs::Permissions::from_mode(0o755))
        .expect("prefix permissions");
    std::fs::create_dir(prefix.path().join(".gateway")).expect("the .gateway folder");
    std::fs::write(prefix.path().join("gateway.conf"), conf).expect("the configuration");
    prefix
}

/// `nginx -t` on the configuration in `prefix`.
pub fn nginx_test(nginx: &Path, prefix: &Path) -> Output {
    Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .args(["-c", "gateway.conf", "-e", "stderr"])
        .output()
        .expect("nginx -t runs")
}

/// gateway.conf listening on `port` and sending every route to `upstream`.
/// Insists that the file keeps one place for each, so this stays a copy of it.
pub fn conf_for(port: u16, upstream: &str) -> String {
    conf_for_pool(port, &[upstream])
}

/// gateway.conf listening on `port` and spreading every route over `upstreams`.
pub fn conf_for_pool(port: u16, upstreams: &[&str]) -> String {
    assert_eq!(
        GATEWAY_CONF.matches(LISTEN).count(),
        1,
        "gateway.conf has exactly one `{LISTEN}`"
    );
    let routes = GATEWAY_CONF
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            line.starts_with("upstream ") && line.ends_with('{')
        })
        .count();
    assert!(routes >= 4, "an upstream per route: {routes}");
    assert_eq!(
        GATEWAY_CONF.matches(UPSTREAM_SERVER).count(),
        routes,
        "every upstream has one `{UPSTREAM_SERVER}`"
    );
    let servers: String = upstreams
        .iter()
        .map(|upstream| format!("server {upstream} max_fails=1 fail_timeout=5s;"))
        .collect::<Vec<_>>()
        .join("\n        ");
    GATEWAY_CONF
        .replace(LISTEN, &format!("listen 127.0.0.1:{port};"))
        .replace(UPSTREAM_SERVER, &servers)
}

/// nginx in the foreground with gateway.conf, in front of `upstream`.
pub struct Gateway {
    pub base: String,
    pub client: reqwest::Client,
    child: Child,
    prefix: TempDir,
}

impl Gateway {
    /// The checked-in configuration on `port`, in front of `upstream`.
    pub async fn start(nginx: &Path, port: u16, upstream: &str) -> Gateway {
        Gateway::start_with(nginx, port, &conf_for(port, upstream)).await
    }

    /// nginx running `conf`, which listens on `port`.
    pub async fn start_with(nginx: &Path, port: u16, conf: &str) -> Gateway {
        Gateway::start_in(nginx, port, prefix_with(conf)).await
    }

    /// nginx running the configuration in `prefix` (made by [`prefix_with`], then
    /// given whatever else it needs), which listens on plain HTTP on `port`.
    pub async fn start_in(nginx: &Path, port: u16, prefix: TempDir) -> Gateway {
        let checked = nginx_test(nginx, prefix.path());
        assert!(
            checked.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let child = Command::new(nginx)
            .arg("-p")
            .arg(prefix.path())
            .args(["-c", "gateway.conf", "-e", "stderr", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let mut gateway = Gateway {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a client"),
            child,
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                panic!("nginx exited ({status}): {}", gateway.error_log());
            }
            assert!(Instant::now() < deadline, "nginx did not start listening");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a product through the gateway and checks that it was accepted.
    pub async fn stock_product(&self, id: &str, name: &str, price: i64, stock: i64) {
        let response = put_product_at(&self.client, &self.base, id, name, price, stock).await;
        assert_eq!(response.status(), StatusCode::OK, "creating {id}");
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join(".gateway/access.log")).unwrap_or_default()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join(".gateway/error.log")).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master stops its workers on the way out; killed
        // outright it would leave them running.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The minimart binary on its own database, logging to a file; SIGKILLed when dropped.
pub struct App {
    pub address: String,
    child: Child,
    folder: TempDir,
}

impl App {
    /// On a SQLite database of its own, behind a gateway on `gateway_port`.
    pub async fn start(gateway_port: u16, payment_latency_ms: u64) -> App {
        let latency = payment_latency_ms.to_string();
        App::start_on(
            Some(gateway_port),
            None,
            &[("MINIMART_PAYMENT_LATENCY_MS", &latency)],
        )
        .await
    }

    /// On `database_url` (a SQLite file in its folder when `None`), with `env`
    /// over the defaults. Behind a gateway on `gateway_port`, if any: the app's
    /// public origin (`MINIMART_PUBLIC_URL`) is then the gateway's,
    /// `http://127.0.0.1:{gateway_port}`.
    pub async fn start_on(
        gateway_port: Option<u16>,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> App {
        let folder = tempfile::tempdir().expect("a temporary directory");
        // Not the port set aside for the gateway, which nginx has not taken yet.
        let port = std::iter::repeat_with(free_port)
            .find(|&port| Some(port) != gateway_port)
            .expect("a free port");
        let address = format!("127.0.0.1:{port}");
        let public_url = gateway_port.map(|port| format!("http://127.0.0.1:{port}"));
        let log = std::fs::File::create(folder.path().join("app.log")).expect("a log file");
        let database_url = database_url.map_or_else(
            || format!("sqlite://{}", folder.path().join("shop.db").display()),
            str::to_owned,
        );
        let child = Command::new(minimart_binary())
            .env("MINIMART_ADDR", &address)
            .env("DATABASE_URL", database_url)
            .env("MINIMART_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("MINIMART_PAYMENT_FAILURE_RATE", "0")
            .env("MINIMART_DEMO_CATALOG", "false")
            .env("MINIMART_WORKERS", "2")
            // The per-request "answered" line, to find the gateway's id in.
            .env("RUST_LOG", "info,minimart::http::request_id=debug")
            .envs(public_url.iter().map(|url| ("MINIMART_PUBLIC_URL", url)))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let app = App {
            address,
            child,
            folder,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = client
                .get(format!("http://{}/readyz", app.address))
                .send()
                .await
                && response.status() == StatusCode::OK
            {
                return app;
            }
            assert!(
                Instant::now() < deadline,
                "the app did not become healthy: {}",
                app.log()
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("app.log")).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the app as an orchestrator does (SIGTERM) and waits for it:
    /// whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        self.child.wait().expect("the app stops").success()
    }

    /// The app's own folder: its log, and its SQLite files when it has them.
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The minimart binary, which cargo builds beside the test binaries (`deps/`) for
/// the integration tests.
pub fn minimart_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let deps = test.parent().expect("the test binary's folder");
    deps.parent().unwrap_or(deps).join("minimart")
}

/// The app and nginx in front of it.
pub async fn shop(payment_latency_ms: u64) -> Option<(App, Gateway)> {
    let nginx = nginx()?;
    // The gateway's port first: the app is told its public origin.
    let port = free_port();
    let app = App::start(port, payment_latency_ms).await;
    let gateway = Gateway::start(&nginx, port, &app.address).await;
    Some((app, gateway))
}

/// The production shape: two instances of the binary, with `env`, on one database
/// of a Postgres of their own, behind nginx running gateway.conf as `edit` leaves
/// it. `None` (after saying so loudly) when nginx or Postgres is missing; in CI
/// that fails. The cluster lives as long as what it answers.
pub async fn two_instances_behind_nginx(
    env: &[(&str, &str)],
    edit: impl FnOnce(String) -> String,
) -> Option<(Cluster, App, App, Gateway)> {
    let nginx = nginx()?;
    let cluster = Cluster::dedicated()?;
    let database_url = cluster.fresh_database().await;
    // The gateway's port first: the instances are told their public origin.
    let port = free_port();
    let first = App::start_on(Some(port), Some(&database_url), env).await;
    let second = App::start_on(Some(port), Some(&database_url), env).await;
    let conf = edit(conf_for_pool(port, &[&first.address, &second.address]));
    let gateway = Gateway::start_with(&nginx, port, &conf).await;
    Some((cluster, first, second, gateway))
}

/// Polls `read` until it contains `needle` (2 s at most), for logs written a
/// moment after the answer.
pub async fn until_logged(read: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = read();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
