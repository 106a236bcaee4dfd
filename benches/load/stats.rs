//! What a client thread records: latency histograms per endpoint and for orders,
//! counts inside the measured window, errors by kind, a per-second series for the
//! charts, and every order it placed (the invariant check reads them all back).
//!
//! Each client thread owns one `Recorder` (no locks on the hot path); they are
//! merged once the threads are done. A few shared atomics feed the progress bar.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The endpoints the scenarios call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Healthz,
    Catalog,
    Product,
    PlaceOrder,
    Order,
    OrderPage,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Healthz,
        Endpoint::Catalog,
        Endpoint::Product,
        Endpoint::PlaceOrder,
        Endpoint::Order,
        Endpoint::OrderPage,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Healthz => "GET /healthz",
            Endpoint::Catalog => "GET /api/products",
            Endpoint::Product => "GET /api/products/{id}",
            Endpoint::PlaceOrder => "POST /api/orders",
            Endpoint::Order => "GET /api/orders/{id}",
            Endpoint::OrderPage => "GET /orders/{id}",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How an order ended, as the shopper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    Rejected,
    PaymentFailed,
}

impl Outcome {
    pub fn parse(status: &str) -> Option<Outcome> {
        match status {
            "CONFIRMED" => Some(Outcome::Confirmed),
            "REJECTED" => Some(Outcome::Rejected),
            "PAYMENT_FAILED" => Some(Outcome::PaymentFailed),
            _ => None,
        }
    }
}

/// An order the run placed: compact, because a long run keeps hundreds of
/// thousands of them in the same process as the server it measures.
#[derive(Debug, Clone)]
pub struct PlacedOrder {
    pub order_id: u128,
    /// The first line's product.
    pub product: u32,
    /// The other lines' products, for an order of several lines.
    pub more: Option<Box<[u32]>>,
}

impl PlacedOrder {
    /// Every line's product, in the order's order.
    pub fn products(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.product).chain(self.more.iter().flat_map(|more| more.iter().copied()))
    }
}

/// Latencies in microseconds, 1 µs to 60 s, three significant digits.
#[allow(clippy::expect_used)] // constant bounds, checked by every run and test
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The per-second histograms only feed the charts: one significant digit (about
/// 6% resolution) keeps a second to about a kilobyte.
#[allow(clippy::expect_used)] // constant bounds, checked by every run and test
fn coarse_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 60_000_000, 1).expect("valid histogram bounds")
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One second of the run, for the charts.
#[derive(Clone)]
pub struct Second {
    pub requests: u64,
    pub decided: u64,
    pub confirmed: u64,
    pub errors: u64,
    /// Every answered request.
    pub any: Histogram<u32>,
    pub outcome: Histogram<u32>,
    pub post: Histogram<u32>,
}

impl Second {
    fn new() -> Second {
        Second {
            requests: 0,
            decided: 0,
            confirmed: 0,
            errors: 0,
            any: coarse_histogram(),
            outcome: coarse_histogram(),
            post: coarse_histogram(),
        }
    }
}

/// Counters the progress bar reads while the threads run.
#[derive(Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub decided: AtomicU64,
    pub confirmed: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn reset(&self) {
        for counter in [&self.requests, &self.decided, &self.confirmed, &self.errors] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

pub struct Recorder {
    start: Instant,
    /// Completions after this instant are not counted in throughput (they still
    /// count in latency: dropping the slow tail would flatter the percentiles).
    window_end: Instant,
    pub latency: Vec<Histogram<u64>>,
    /// Requests answered inside the window, per endpoint.
    pub in_window: Vec<u64>,
    /// From the order's (scheduled) start to the poll that saw its outcome.
    pub order_outcome: Histogram<u64>,
    pub order_confirmed: Histogram<u64>,
    pub decided_in_window: u64,
    pub confirmed_in_window: u64,
    pub confirmed: u64,
    pub rejected: u64,
    pub payment_failed: u64,
    /// Orders the shopper gave up following (still pending at the drain deadline).
    pub unfollowed: u64,
    /// Orders whose POST never got an answer, even after retries with the same key.
    pub unacknowledged: u64,
    pub errors: BTreeMap<String, u64>,
    /// Orders refused at once (503 `overloaded`): shed, not failed.
    pub shed: u64,
    pub shed_in_window: u64,
    /// From the POST's (scheduled) start to its 503 `overloaded`.
    pub shed_latency: Histogram<u64>,
    /// Admitted POSTs (202): milliseconds since the start, latency in µs. Kept
    /// only when asked (`keep_post_samples`), to find when latency recovers.
    pub post_samples: Vec<(u32, u32)>,
    pub keep_post_samples: bool,
    pub series: Vec<Second>,
    pub orders: Vec<PlacedOrder>,
    live: Arc<Live>,
}

impl Recorder {
    pub fn new(start: Instant, window: Duration, series_len: usize, live: Arc<Live>) -> Recorder {
        Recorder {
            start,
            window_end: start + window,
            latency: Endpoint::ALL.iter().map(|_| latency_histogram()).collect(),
            in_window: vec![0; Endpoint::ALL.len()],
            order_outcome: latency_histogram(),
            order_confirmed: latency_histogram(),
            decided_in_window: 0,
            confirmed_in_window: 0,
            confirmed: 0,
            rejected: 0,
            payment_failed: 0,
            unfollowed: 0,
            unacknowledged: 0,
            errors: BTreeMap::new(),
            shed: 0,
            shed_in_window: 0,
            shed_latency: latency_histogram(),
            post_samples: Vec::new(),
            keep_post_samples: false,
            // Allocated up front, so the series does not grow the process's memory
            // while RSS is being watched.
            series: (0..series_len).map(|_| Second::new()).collect(),
            orders: Vec::new(),
            live,
        }
    }

    fn second(&mut self, at: Instant) -> Option<&mut Second> {
        let index = at.saturating_duration_since(self.start).as_secs();
        self.series.get_mut(usize::try_from(index).ok()?)
    }

    /// An answered request, from `started` (its scheduled start under open load)
    /// to now.
    pub fn request(&mut self, endpoint: Endpoint, started: Instant) {
        let now = Instant::now();
        let latency = micros(now.saturating_duration_since(started));
        self.latency[endpoint.index()].saturating_record(latency);
        if now < self.window_end {
            self.in_window[endpoint.index()] += 1;
        }
        if endpoint == Endpoint::PlaceOrder && self.keep_post_samples {
            let at = now.saturating_duration_since(self.start).as_millis();
            self.post_samples.push((
                u32::try_from(at).unwrap_or(u32::MAX),
                u32::try_from(latency).unwrap_or(u32::MAX),
            ));
        }
        if let Some(second) = self.second(now) {
            second.requests += 1;
            let _ = second.any.record(latency);
            if endpoint == Endpoint::PlaceOrder {
                let _ = second.post.record(latency);
            }
        }
        self.live.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&mut self, endpoint: Endpoint, kind: &str) {
        let key = format!("{}: {kind}", endpoint.label());
        *self.errors.entry(key).or_insert(0) += 1;
        if let Some(second) = self.second(Instant::now()) {
            second.errors += 1;
        }
        self.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// An order refused at once as overloaded, `started` being when its POST
    /// was (scheduled to be) sent.
    pub fn shed(&mut self, started: Instant) {
        let now = Instant::now();
        self.shed_latency
            .saturating_record(micros(now.saturating_duration_since(started)));
        self.shed += 1;
        if now < self.window_end {
            self.shed_in_window += 1;
        }
    }

    pub fn placed(&mut self, order: PlacedOrder) {
        self.orders.push(order);
    }

    /// An order seen in its terminal status, `started` being when it was
    /// (scheduled to be) placed.
    pub fn decided(&mut self, outcome: Outcome, started: Instant) {
        let now = Instant::now();
        let latency = micros(now.saturating_duration_since(started));
        self.order_outcome.saturating_record(latency);
        let confirmed = outcome == Outcome::Confirmed;
        match outcome {
            Outcome::Confirmed => {
                self.confirmed += 1;
                self.order_confirmed.saturating_record(latency);
            }
            Outcome::Rejected => self.rejected += 1,
            Outcome::PaymentFailed => self.payment_failed += 1,
        }
        if now < self.window_end {
            self.decided_in_window += 1;
            if confirmed {
                self.confirmed_in_window += 1;
            }
        }
        if let Some(second) = self.second(now) {
            second.decided += 1;
            if confirmed {
                second.confirmed += 1;
            }
            let _ = second.outcome.record(latency);
        }
        self.live.decided.fetch_add(1, Ordering::Relaxed);
        if confirmed {
            self.live.confirmed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds another thread's records to these.
    pub fn merge(&mut self, other: Recorder) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            let _ = mine.add(theirs);
        }
        for (mine, theirs) in self.in_window.iter_mut().zip(&other.in_window) {
            *mine += theirs;
        }
        let _ = self.order_outcome.add(&other.order_outcome);
        let _ = self.order_confirmed.add(&other.order_confirmed);
        self.decided_in_window += other.decided_in_window;
        self.confirmed_in_window += other.confirmed_in_window;
        self.confirmed += other.confirmed;
        self.rejected += other.rejected;
        self.payment_failed += other.payment_failed;
        self.unfollowed += other.unfollowed;
        self.unacknowledged += other.unacknowledged;
        self.shed += other.shed;
        self.shed_in_window += other.shed_in_window;
        let _ = self.shed_latency.add(&other.shed_latency);
        self.post_samples.extend(other.post_samples);
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_insert(0) += count;
        }
        for (mine, theirs) in self.series.iter_mut().zip(&other.series) {
            mine.requests += theirs.requests;
            mine.decided += theirs.decided;
            mine.confirmed += theirs.confirmed;
            mine.errors += theirs.errors;
            let _ = mine.any.add(&theirs.any);
            let _ = mine.outcome.add(&theirs.outcome);
            let _ = mine.post.add(&theirs.post);
        }
        self.orders.extend(other.orders);
    }

    pub fn requests_in_window(&self, endpoint: Endpoint) -> u64 {
        self.in_window[endpoint.index()]
    }

    pub fn latency_of(&self, endpoint: Endpoint) -> &Histogram<u64> {
        &self.latency[endpoint.index()]
    }
}
