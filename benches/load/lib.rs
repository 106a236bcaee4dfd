//! The load generator behind `cargo bench --bench load`, as a library so that the
//! smoke test (`tests/load_smoke.rs`) runs the very same code.
//!
//! A run: start the target (minimart in-process, or `--url`), seed products,
//! measure the floor (`GET /healthz` at full speed, same client, same
//! concurrency), run the scenario under closed or open load with a progress bar,
//! let in-flight orders finish, then read everything back and check the
//! invariants. [`run`] answers the [`Results`]; `report` prints and writes them.

pub mod check;
pub mod client;
pub mod options;
pub mod overload;
pub mod report;
pub mod shoppers;
pub mod stats;
pub mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use options::Options;
pub use report::Results;
use shoppers::{Phase, Picker, Plan};
use stats::{Endpoint, Live, Recorder};
use target::Target;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("setting up the run failed: {0}")]
    Setup(String),
    #[error("the load client failed: {0}")]
    Client(String),
    #[error("could not write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How long a deployment given by `--url` may take to become healthy.
const HEALTHY_PATIENCE: Duration = Duration::from_secs(10);
/// Products are seeded this many at a time.
const SEED_CONCURRENCY: usize = 16;
/// The invariant check reads this many orders at a time per client thread.
const CHECK_CONCURRENCY: usize = 32;

/// Runs the benchmark as the options say and answers what it measured.
pub fn run(options: &Options) -> Result<Results, LoadError> {
    let options = options.effective();
    options.validate().map_err(LoadError::Options)?;
    let target = Target::start(&options)?;
    let outcome = run_against(&options, &target);
    target.stop();
    outcome
}

fn run_against(options: &Options, target: &Target) -> Result<Results, LoadError> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let products: Vec<String> = (0..options.products)
        .map(|index| format!("load-{run_id}-{index:04}"))
        .collect();
    let threads = options.client_threads;

    // Setup: a healthy target with the run's own products.
    on_one_thread(async {
        shoppers::wait_healthy(&target.base, HEALTHY_PATIENCE).await?;
        shoppers::seed(
            &target.base,
            &target.admin_token,
            &products,
            options.stock,
            SEED_CONCURRENCY,
        )
        .await
    })?;

    let live = Arc::new(Live::default());
    let plan = Arc::new(Plan {
        scenario: options.scenario,
        base: target.base.clone(),
        products: products.clone(),
        picker: Picker {
            products: options.products,
            hot: options.hot_products,
            hot_share: options.hot_share,
        },
        poll: Duration::from_millis(options.poll_ms),
        order_page_share: options.order_page_share,
        run_id,
        live: Arc::clone(&live),
        quantity: None,
        lines: options.lines,
        shed_is_final: options.scenario.is_overload(),
    });
    let progress = Progress::new(options);

    // The floor: the same client and concurrency, on the cheapest endpoint.
    progress.phase("floor: GET /healthz", options.floor_duration());
    let floor_phase = phase(options.floor_duration(), Duration::ZERO);
    let floor = merge(on_client_threads_with_progress(
        threads,
        &progress,
        &live,
        |thread| {
            shoppers::closed(
                Arc::clone(&plan),
                thread,
                shoppers::share_of(options.shoppers, threads, thread),
                floor_phase,
                true,
            )
        },
    )?)?;
    let floor_rps = floor.requests_in_window(Endpoint::Healthz) as f64 / options.floor_duration;
    if options.scenario.is_overload() {
        return overload::run(
            options, target, &products, &plan, &live, floor_rps, &progress,
        );
    }

    // The scenario.
    live.reset();
    let rss_start = target::rss_kib();
    let window = options.duration();
    let load_phase = phase(window, options.drain());
    progress.phase(&format!("{} load", options.scenario.as_str()), window);
    let mut rss_series = Vec::with_capacity(load_phase.series_len);
    let mut next_sample = load_phase.start;
    let sample_rss = |rss_series: &mut Vec<Option<u64>>, next_sample: &mut Instant| {
        if Instant::now() >= *next_sample && rss_series.len() < rss_series.capacity() {
            rss_series.push(target::rss_kib());
            *next_sample += Duration::from_secs(1);
        }
    };
    let recorders = shoppers::on_client_threads(
        threads,
        |thread| {
            let plan = Arc::clone(&plan);
            async move {
                match options.rate {
                    None => {
                        let shoppers = shoppers::share_of(options.shoppers, threads, thread);
                        shoppers::closed(plan, thread, shoppers, load_phase, false).await
                    }
                    Some(rate) => {
                        let in_flight = shoppers::share_of(options.max_in_flight, threads, thread);
                        shoppers::open(plan, thread, threads, rate, in_flight.max(1), load_phase)
                            .await
                    }
                }
            }
        },
        || {
            progress.tick(&live, load_phase.start);
            sample_rss(&mut rss_series, &mut next_sample);
        },
    )?;
    let load = merge(recorders)?;
    let rss_end = target::rss_kib();
    progress.finish();

    let invariants = check_invariants(
        options,
        target,
        &products,
        &vec![options.stock; products.len()],
        load.orders.clone(),
        load.unacknowledged,
    )?;

    Ok(report::results(report::Measured {
        options,
        target: target.describe(),
        floor_rps,
        load: &load,
        rss_start,
        rss_end,
        rss_series: &rss_series,
        in_process: target.is_in_process(),
        invariants,
    }))
}

/// Reads every order of the run back, and each product's stock, and checks
/// the invariants (`seeded`: each product's stock at the start).
fn check_invariants(
    options: &Options,
    target: &Target,
    products: &[String],
    seeded: &[i64],
    orders: Vec<stats::PlacedOrder>,
    unacknowledged: u64,
) -> Result<check::Invariants, LoadError> {
    let threads = options.client_threads;
    let orders = Arc::new(orders);
    let checked = AtomicU64::new(0);
    let check_progress = Progress::new(options);
    check_progress.counting("checking invariants", orders.len() as u64);
    let deadline = Instant::now() + options.drain();
    let tallies = shoppers::on_client_threads(
        threads,
        |thread| {
            let (orders, checked) = (Arc::clone(&orders), &checked);
            async move {
                check::check_orders(
                    &target.base,
                    &orders,
                    products,
                    thread,
                    threads,
                    CHECK_CONCURRENCY,
                    deadline,
                    checked,
                )
                .await
            }
        },
        || check_progress.set(checked.load(Ordering::Relaxed)),
    )?;
    let stocks = on_one_thread(async { Ok(check::stocks(&target.base, products).await) })?;
    check_progress.finish();
    Ok(check::conclude(
        tallies,
        products,
        seeded,
        &stocks,
        unacknowledged,
    ))
}

/// A phase that starts now, runs for `window`, and lets runs under way finish
/// within `drain` after it.
fn phase(window: Duration, drain: Duration) -> Phase {
    let start = Instant::now();
    let seconds = (window + drain).as_secs_f64().ceil() as usize + 1;
    Phase {
        start,
        end: start + window,
        drain_until: start + window + drain,
        series_len: seconds,
    }
}

fn merge(recorders: Vec<Recorder>) -> Result<Recorder, LoadError> {
    let mut recorders = recorders.into_iter();
    let mut total = recorders
        .next()
        .ok_or_else(|| LoadError::Client("no client thread ran".to_owned()))?;
    for recorder in recorders {
        total.merge(recorder);
    }
    Ok(total)
}

/// Runs `work` to completion on a runtime of its own, on this thread.
fn on_one_thread<T>(
    work: impl std::future::Future<Output = Result<T, LoadError>>,
) -> Result<T, LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Client(format!("a client runtime: {e}")))?;
    tokio::task::LocalSet::new().block_on(&runtime, work)
}

fn on_client_threads_with_progress<F, Fut>(
    threads: usize,
    progress: &Progress,
    live: &Live,
    work: F,
) -> Result<Vec<Recorder>, LoadError>
where
    F: Fn(usize) -> Fut + Sync,
    Fut: std::future::Future<Output = Result<Recorder, LoadError>>,
{
    let start = Instant::now();
    shoppers::on_client_threads(threads, work, || progress.tick(live, start))
}

/// The progress bar, on stderr; hidden with `--no-progress` or when stderr is not
/// a terminal.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(options: &Options) -> Progress {
        let bar = if options.no_progress {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
        } else {
            ProgressBar::new(0)
        };
        Progress { bar }
    }

    fn phase(&self, name: &str, length: Duration) {
        let template = "{prefix:>28} [{bar:30}] {elapsed:>4} {msg}";
        self.restart(name, length.as_millis() as u64, template);
    }

    fn counting(&self, name: &str, total: u64) {
        self.restart(name, total, "{prefix:>28} [{bar:30}] {pos}/{len} orders");
    }

    /// The bar back at zero, `length` long, drawn with `template`.
    fn restart(&self, name: &str, length: u64, template: &str) {
        self.bar.set_length(length);
        self.bar.set_position(0);
        self.bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        self.bar.set_prefix(name.to_owned());
    }

    fn tick(&self, live: &Live, start: Instant) {
        let elapsed = start.elapsed();
        self.bar.set_position(elapsed.as_millis() as u64);
        let seconds = elapsed.as_secs_f64().max(0.001);
        let requests = live.requests.load(Ordering::Relaxed);
        let decided = live.decided.load(Ordering::Relaxed);
        let confirmed = live.confirmed.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        self.bar.set_message(format!(
            "{:.0} req/s, {:.0} orders/s ({confirmed} confirmed), {errors} errors",
            requests as f64 / seconds,
            decided as f64 / seconds,
        ));
    }

    fn set(&self, position: u64) {
        self.bar.set_position(position);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
