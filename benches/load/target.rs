//! The server under load: minimart started in this process on its own actix
//! system thread (port 0) on a fresh temporary SQLite database or the Postgres
//! database given by `--database`, or a deployment given by `--url`.

use std::sync::mpsc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use minimart::config::Config;
use minimart::startup::Application;
use tempfile::TempDir;

use super::LoadError;
use super::options::Options;

/// The token the in-process server is started with.
const IN_PROCESS_TOKEN: &str = "load-benchmark-admin-token";

pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    pub admin_token: String,
    /// What the in-process server runs on: `SQLite` or `Postgres`.
    backend: &'static str,
    in_process: Option<InProcess>,
}

struct InProcess {
    handle: ServerHandle,
    thread: JoinHandle<std::io::Result<()>>,
    _database: TempDir,
}

impl Target {
    pub fn start(options: &Options) -> Result<Target, LoadError> {
        if let Some(url) = &options.url {
            if !url.starts_with("http://") {
                return Err(LoadError::Setup(format!(
                    "--url {url:?}: only http:// is supported"
                )));
            }
            return Ok(Target {
                base: url.trim_end_matches('/').to_owned(),
                admin_token: options.admin_token.clone().unwrap_or_default(),
                backend: "",
                in_process: None,
            });
        }

        let database = tempfile::tempdir()
            .map_err(|e| LoadError::Setup(format!("a temporary directory: {e}")))?;
        let (backend, database_url) = match options.database.as_str() {
            "sqlite" => (
                "SQLite",
                format!("sqlite://{}", database.path().join("load.db").display()),
            ),
            postgres => ("Postgres", postgres.to_owned()),
        };
        let config = Config {
            addr: "127.0.0.1:0".to_owned(),
            database_url,
            admin_token: Some(
                IN_PROCESS_TOKEN
                    .parse()
                    .map_err(|e: String| LoadError::Setup(e))?,
            ),
            payment_failure_rate: options.payment_failure_rate,
            payment_latency_ms: options.payment_latency_ms,
            demo_catalog: false,
            workers: options.server_workers,
            shutdown_timeout_secs: 5,
            ..Config::default()
        };
        let config = Config {
            max_in_flight: options.server_max_in_flight.unwrap_or(config.max_in_flight),
            queue_deadline_ms: options
                .server_queue_deadline_ms
                .unwrap_or(config.queue_deadline_ms),
            ..config
        };

        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("minimart".to_owned())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    match Application::build(config).await {
                        Ok(app) => {
                            let _ = ready_tx.send(Ok((app.address(), app.handle())));
                            app.run_until_stopped().await
                        }
                        Err(error) => {
                            let _ = ready_tx.send(Err(minimart::telemetry::error_chain(&error)));
                            Ok(())
                        }
                    }
                })
            })
            .map_err(|e| LoadError::Setup(format!("the server thread: {e}")))?;
        let (address, handle) = ready_rx
            .recv()
            .map_err(|_| LoadError::Setup("the server thread ended during start-up".to_owned()))?
            .map_err(|e| LoadError::Setup(format!("minimart did not start: {e}")))?;
        Ok(Target {
            base: format!("http://{address}"),
            admin_token: IN_PROCESS_TOKEN.to_owned(),
            backend,
            in_process: Some(InProcess {
                handle,
                thread,
                _database: database,
            }),
        })
    }

    pub fn is_in_process(&self) -> bool {
        self.in_process.is_some()
    }

    pub fn describe(&self) -> String {
        if self.is_in_process() {
            format!("in-process minimart on {} at {}", self.backend, self.base)
        } else {
            self.base.clone()
        }
    }

    /// Stops the in-process server (gracefully: nothing is in flight by now) and
    /// waits for its thread.
    pub fn stop(self) {
        if let Some(server) = self.in_process {
            // `stop` sends the command at once; its future only reports completion,
            // which joining the thread also does.
            drop(server.handle.stop(true));
            let _ = server.thread.join();
        }
    }
}

/// The resident memory of this process, in KiB. In-process, that is the server
/// together with the load generator.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
