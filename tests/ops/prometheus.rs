use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use support::free_port;
use support::gateway::prometheus;
use support::spawn_app_with;

/// The shipped scrape configuration.
const PROMETHEUS_YML: &str = include_str!("../../ops/prometheus.yml");
/// The one target it names, replaced by the test app's address.
const TARGET: &str = "\"127.0.0.1:8080\"";

/// Prometheus on a free loopback port with its storage in a temporary folder;
/// killed when dropped.
struct Prometheus {
    base: String,
    child: Child,
    folder: TempDir,
}

impl Prometheus {
    fn start(program: &Path, config: &str) -> Prometheus {
        let folder = tempfile::tempdir().expect("a temporary directory");
        let config_file = folder.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("the configuration");
        let log = std::fs::File::create(folder.path().join("prometheus.log")).expect("a log");
        let port = free_port();
        let child = Command::new(program)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                folder.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            child,
            folder,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's samples, by their `status` label ("" without one);
    /// empty while Prometheus is not up or has nothing.
    async fn query(&self, client: &reqwest::Client, query: &str) -> BTreeMap<String, f64> {
        let Ok(response) = client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", query)])
            .send()
            .await
        else {
            return BTreeMap::new();
        };
        let Ok(body) = response.json::<Value>().await else {
            return BTreeMap::new();
        };
        body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|sample| {
                let status = sample["metric"]["status"].as_str().unwrap_or("").to_owned();
                let value = sample["value"][1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap();
                (status, value)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn prometheus_scrapes_the_orders_the_app_placed() {
    let Some(program) = prometheus() else {
        return;
    };
    let app = spawn_app_with(|config| {
        config.payment_failure_rate = 0.5;
    })
    .await;
    app.stock_product("kettle", 5900, 3).await;
    app.stock_product("mug", 900, 100).await;
    let mut orders = Vec::new();
    for _ in 0..5 {
        orders.push(app.order_id("kettle", 1).await);
    }
    for _ in 0..5 {
        orders.push(app.order_id("mug", 1).await);
    }
    let mut decided: BTreeMap<String, f64> = BTreeMap::new();
    for order_id in &orders {
        let order = app.until_terminal(order_id).await;
        *decided
            .entry(order["status"].as_str().unwrap().to_owned())
            .or_default() += 1.0;
    }

    assert_eq!(
        PROMETHEUS_YML.matches(TARGET).count(),
        1,
        "ops/prometheus.yml names one target, {TARGET}"
    );
    let address = app.address.trim_start_matches("http://");
    let config = PROMETHEUS_YML.replace(TARGET, &format!("\"{address}\""));
    let prometheus = Prometheus::start(&program, &config);

    // The first scrape comes within one scrape interval (5 s) of the start.
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected_placed = BTreeMap::from([(String::new(), orders.len() as f64)]);
    loop {
        let placed = prometheus
            .query(&app.client, "minimart_orders_placed_total")
            .await;
        if placed == expected_placed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw {expected_placed:?} orders placed (last: {placed:?});\nits log:\n{}",
            prometheus.log()
        );
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    let by_status = prometheus
        .query(&app.client, "minimart_orders_decided_total")
        .await;
    for status in ["CONFIRMED", "REJECTED", "PAYMENT_FAILED"] {
        assert_eq!(
            by_status.get(status).copied().unwrap_or(0.0),
            decided.get(status).copied().unwrap_or(0.0),
            "{status}: Prometheus has {by_status:?}, the API says {decided:?}"
        );
    }
    let up = prometheus.query(&app.client, "up{job=\"minimart\"}").await;
    assert_eq!(up.values().copied().collect::<Vec<_>>(), vec![1.0]);
}
