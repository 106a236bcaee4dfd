//! The load generator's flags. `cargo bench --bench load -- --help` prints them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// What each virtual shopper does, over and over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// List the catalog, open a product, order it, follow the order to its outcome,
    /// sometimes open the order's page.
    Journey,
    /// Only place an order and read it until it is decided.
    Orders,
    /// Only read single products (`GET /api/products/{id}`): the hottest read path.
    Reads,
    /// Overload: measure the capacity with closed load (`--capacity-duration`),
    /// then offer 3× that as open load for `--duration`, then 0.5× for
    /// `--recovery` to see how fast the shop recovers. Orders as in `orders`; a
    /// 503 `overloaded` is a refusal (shed), not an error, and is not retried.
    Overload,
    /// A flash sale: the capacity as in `overload`, then `--flash-shoppers`
    /// shoppers order one unit each of one product with `--flash-stock` units,
    /// all arriving within `--flash-window` seconds, then 0.5× the capacity on
    /// the other products for `--recovery`.
    FlashSale,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Journey => "journey",
            Scenario::Orders => "orders",
            Scenario::Reads => "reads",
            Scenario::Overload => "overload",
            Scenario::FlashSale => "flash-sale",
        }
    }

    /// Whether the scenario measures overload (a capacity phase, then more).
    pub fn is_overload(self) -> bool {
        matches!(self, Scenario::Overload | Scenario::FlashSale)
    }
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "load",
    about = "Drives virtual shoppers against minimart over HTTP and checks that nothing broke",
    after_help = "Throughputs are reported beside the floor (GET /healthz at full speed, same \
                  client, same concurrency, same run) as ratios: read the ratios, not the \
                  absolute figures, on a shared machine."
)]
pub struct Options {
    /// What each shopper does.
    #[arg(long, value_enum, default_value = "journey")]
    pub scenario: Scenario,

    /// Seconds of load, after the floor phase.
    #[arg(long, default_value_t = 20.0, value_parser = positive)]
    pub duration: f64,

    /// Concurrent shoppers (closed load), and the concurrency of the floor phase.
    #[arg(long, default_value_t = 64)]
    pub shoppers: usize,

    /// Open load: scenario runs started per second (one order each), on a fixed
    /// schedule whatever the server does; latency counts from the scheduled start.
    /// Without it the load is closed: each shopper starts again as soon as it is done.
    #[arg(long, value_parser = positive)]
    pub rate: Option<f64>,

    /// Products to seed.
    #[arg(long, default_value_t = 100)]
    pub products: usize,

    /// Stock of each seeded product.
    #[arg(long, default_value_t = 100_000_000)]
    pub stock: i64,

    /// How many products are hot.
    #[arg(long, default_value_t = 3)]
    pub hot_products: usize,

    /// Share of picks (product reads and orders) that go to the hot products; the
    /// rest spread evenly over the others. 0.0 means no skew.
    #[arg(long, default_value_t = 0.8, value_parser = share)]
    pub hot_share: f64,

    /// Lines per order: `1`, or a range such as `1-3` (each order then holds a
    /// random number of lines in it, each a different product, picked as
    /// `--hot-share` says). One line is the first API's body.
    #[arg(long, default_value = "1", value_parser = lines)]
    pub lines: (u32, u32),

    /// In-process server: share of payments declined.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub payment_failure_rate: f64,

    /// In-process server: simulated payment time in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub payment_latency_ms: u64,

    /// In-process server: HTTP worker threads (default: one per core).
    #[arg(long)]
    pub server_workers: Option<usize>,

    /// In-process server: its database, `sqlite` (a fresh temporary file) or a
    /// `postgres://` URL (best a fresh, empty database), so that both backends are
    /// measured by the same tool.
    #[arg(long, default_value = "sqlite", value_parser = database)]
    pub database: String,

    /// Target a running deployment instead of starting minimart in-process.
    #[arg(long)]
    pub url: Option<String>,

    /// Admin token of the deployment given by --url, to seed products.
    #[arg(long, env = "MINIMART_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Write an HTML report with SVG charts into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,

    /// A few seconds in all, for smoke tests: short phases, few products.
    #[arg(long)]
    pub quick: bool,

    /// Seconds of the floor phase (GET /healthz at full speed).
    #[arg(long, default_value_t = 5.0, value_parser = positive)]
    pub floor_duration: f64,

    /// Milliseconds between two reads of a pending order: the resolution of the
    /// order-to-outcome latency, and the cost of following an order.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,

    /// Share of journeys that end on the order's HTML page.
    #[arg(long, default_value_t = 0.2, value_parser = share)]
    pub order_page_share: f64,

    /// Client threads, each with its own runtime and connections.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,

    /// Open load: most scenario runs in flight at once. Later arrivals wait for a
    /// slot, and that wait counts in their latency. The flash sale raises it to
    /// `--flash-shoppers`, so that every shopper arrives.
    #[arg(long, default_value_t = 2048)]
    pub max_in_flight: usize,

    /// Seconds to wait, after the load stops, for orders to reach a terminal status.
    #[arg(long, default_value_t = 30.0, value_parser = positive)]
    pub drain: f64,

    /// overload, flash-sale: seconds of closed load that measure the capacity.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub capacity_duration: f64,

    /// overload, flash-sale: seconds of open load at half the capacity after
    /// the overload, to see recovery.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub recovery: f64,

    /// overload: the offered load, as a multiple of the measured capacity.
    #[arg(long, default_value_t = 3.0, value_parser = positive)]
    pub overload_factor: f64,

    /// flash-sale: shoppers, one order of one unit each.
    #[arg(long, default_value_t = 5_000)]
    pub flash_shoppers: usize,

    /// flash-sale: units of the one product on sale.
    #[arg(long, default_value_t = 100)]
    pub flash_stock: i64,

    /// flash-sale: seconds within which every shopper arrives.
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub flash_window: f64,

    /// In-process server: `MINIMART_MAX_IN_FLIGHT` (default: the app's).
    #[arg(long)]
    pub server_max_in_flight: Option<usize>,

    /// In-process server: `MINIMART_QUEUE_DEADLINE_MS` (default: the app's).
    #[arg(long)]
    pub server_queue_deadline_ms: Option<u64>,

    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Options {
    /// The options as run: `--quick` shortens the phases and shrinks the catalog.
    pub fn effective(&self) -> Options {
        let mut options = self.clone();
        if options.quick {
            options.duration = options.duration.min(2.0);
            options.floor_duration = options.floor_duration.min(0.5);
            options.products = options.products.min(10);
            options.hot_products = options.hot_products.min(options.products);
            options.shoppers = options.shoppers.min(16);
            options.drain = options.drain.min(10.0);
            options.capacity_duration = options.capacity_duration.min(1.0);
            options.recovery = options.recovery.min(1.5);
            options.flash_shoppers = options.flash_shoppers.min(500);
            options.flash_stock = options.flash_stock.min(50);
        }
        options
    }

    /// Checks what clap cannot check flag by flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.shoppers == 0 {
            return Err("--shoppers must be at least 1".to_owned());
        }
        if self.products == 0 {
            return Err("--products must be at least 1".to_owned());
        }
        if self.hot_products > self.products {
            return Err("--hot-products cannot exceed --products".to_owned());
        }
        if self.client_threads == 0 || self.max_in_flight == 0 {
            return Err("--client-threads and --max-in-flight must be at least 1".to_owned());
        }
        if !(0..=minimart::domain::Stock::MAX).contains(&self.stock) {
            return Err(format!(
                "--stock must be between 0 and {}",
                minimart::domain::Stock::MAX
            ));
        }
        if self.flash_shoppers == 0
            || !(1..=minimart::domain::Stock::MAX).contains(&self.flash_stock)
        {
            return Err("--flash-shoppers and --flash-stock must be at least 1".to_owned());
        }
        if self.url.is_some() && self.admin_token.is_none() {
            return Err(
                "--url needs --admin-token (or MINIMART_ADMIN_TOKEN) to seed products".to_owned(),
            );
        }
        Ok(())
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    pub fn floor_duration(&self) -> Duration {
        Duration::from_secs_f64(self.floor_duration)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs_f64(self.drain)
    }
}

fn positive(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => Err(format!("{raw:?} is not a positive number")),
    }
}

fn lines(raw: &str) -> Result<(u32, u32), String> {
    let (low, high) = raw.split_once('-').unwrap_or((raw, raw));
    let parse = |n: &str| n.trim().parse::<u32>().map_err(|e| format!("{raw:?}: {e}"));
    let (low, high) = (parse(low)?, parse(high)?);
    if low == 0 || high < low || high > 50 {
        return Err(format!("{raw:?}: lines are 1 to 50, the smaller first"));
    }
    Ok((low, high))
}

fn share(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{raw:?} is not a share between 0.0 and 1.0")),
    }
}

fn database(raw: &str) -> Result<String, String> {
    if raw == "sqlite" || raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        Ok(raw.to_owned())
    } else {
        Err("expected sqlite or a postgres:// URL".to_owned())
    }
}
