//! Virtual shoppers. Each client thread runs its own single-threaded runtime with
//! its own connections and its own [`Recorder`]; shoppers are local tasks on it,
//! so recording takes no lock.
//!
//! Closed load: `--shoppers` tasks, each starting its next scenario run as soon as
//! the last one is done. Open load: each thread starts runs on a fixed schedule
//! (its share of `--rate`), whatever the server does; every latency of a run's
//! first request, and its order-to-outcome time, count from the *scheduled* start,
//! so a server that falls behind shows its queueing instead of hiding it
//! (no coordinated omission).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::LoadError;
use super::client::{CallError, Http, Reply};
use super::options::Scenario;
use super::stats::{Endpoint, Live, Outcome, PlacedOrder, Recorder};

/// How many times an order POST is sent (with the same Idempotency-Key) before
/// the shopper gives up on it.
const POST_ATTEMPTS: usize = 3;

/// Chooses products: `hot_share` of picks among the first `hot` products, the
/// rest evenly among the others. A handful of hot products is the hard case for
/// the store: their rows take most of the stock updates.
#[derive(Debug, Clone, Copy)]
pub struct Picker {
    pub products: usize,
    pub hot: usize,
    pub hot_share: f64,
}

impl Picker {
    pub fn pick(&self, rng: &mut SmallRng) -> usize {
        let skewed = self.hot > 0 && self.hot < self.products;
        if !skewed {
            return rng.random_range(0..self.products);
        }
        if rng.random_bool(self.hot_share) {
            rng.random_range(0..self.hot)
        } else {
            rng.random_range(self.hot..self.products)
        }
    }
}

/// What every client thread shares.
pub struct Plan {
    pub scenario: Scenario,
    pub base: String,
    pub products: Vec<String>,
    pub picker: Picker,
    pub poll: Duration,
    pub order_page_share: f64,
    /// Makes idempotency keys unique across runs against the same deployment.
    pub run_id: String,
    pub live: Arc<Live>,
    /// Units per line; random 1 or 2 without it.
    pub quantity: Option<u32>,
    /// Lines per order, from the first to the second, at random.
    pub lines: (u32, u32),
    /// Whether a 503 `overloaded` ends the run (overload scenarios: the
    /// refusal is what is measured) instead of being retried.
    pub shed_is_final: bool,
}

/// When a phase runs. Runs start until `end`; a run under way then finishes,
/// following its order until `drain_until` at the latest.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub start: Instant,
    pub end: Instant,
    pub drain_until: Instant,
    pub series_len: usize,
}

/// Runs `work(thread index)` on `threads` threads, each with its own
/// single-threaded Tokio runtime, calling `tick` about five times a second on
/// the calling thread until they are all done.
pub fn on_client_threads<T, F, Fut>(
    threads: usize,
    work: F,
    mut tick: impl FnMut(),
) -> Result<Vec<T>, LoadError>
where
    T: Send,
    F: Fn(usize) -> Fut + Sync,
    Fut: Future<Output = Result<T, LoadError>>,
{
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| LoadError::Client(format!("a client runtime: {e}")))?;
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&runtime, work(index))
                })
            })
            .collect();
        while !handles.iter().all(|handle| handle.is_finished()) {
            tick();
            std::thread::sleep(Duration::from_millis(200));
        }
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| LoadError::Client("a client thread panicked".to_owned()))?
            })
            .collect()
    })
}

/// A client thread's share of `total`.
pub fn share_of(total: usize, threads: usize, index: usize) -> usize {
    total / threads + usize::from(index < total % threads)
}

/// What the tasks of one client thread share.
struct Local {
    plan: Arc<Plan>,
    http: Http,
    recorder: RefCell<Recorder>,
    thread: usize,
    phase: Phase,
}

/// Closed load: `shoppers` shoppers on this thread, each running `scenario`
/// (or only `GET /healthz`, for the floor) until the phase ends.
pub async fn closed(
    plan: Arc<Plan>,
    thread: usize,
    shoppers: usize,
    phase: Phase,
    floor: bool,
) -> Result<Recorder, LoadError> {
    let http = Http::new(&plan.base);
    let local = Rc::new(local(plan, thread, phase, http));
    let tasks: Vec<_> = (0..shoppers)
        .map(|index| {
            let local = Rc::clone(&local);
            tokio::task::spawn_local(async move {
                let mut shopper = Shopper::new(local, index as u64);
                while Instant::now() < shopper.local.phase.end {
                    if floor {
                        shopper.healthz().await;
                    } else {
                        shopper.run(None).await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| LoadError::Client(format!("a shopper failed: {e}")))?;
    }
    into_recorder(local)
}

/// This thread's arrivals in the phase, on the schedule: arrival n belongs to
/// thread n % threads and is due at start + n / rate. Each with when it is due.
fn arrivals(
    phase: Phase,
    rate: f64,
    thread: usize,
    threads: usize,
) -> impl Iterator<Item = (u64, Instant)> {
    (thread as u64..)
        .step_by(threads)
        .map(move |arrival| {
            let due = phase.start + Duration::from_secs_f64(arrival as f64 / rate);
            (arrival, due)
        })
        .take_while(move |&(_, due)| due < phase.end)
}

/// Open load: this thread's share of `rate` scenario runs per second, at most
/// `max_in_flight` at once.
pub async fn open(
    plan: Arc<Plan>,
    thread: usize,
    threads: usize,
    rate: f64,
    max_in_flight: usize,
    phase: Phase,
) -> Result<Recorder, LoadError> {
    let http = Http::new(&plan.base);
    let local = Rc::new(local(plan, thread, phase, http));
    let slots = Arc::new(Semaphore::new(max_in_flight));
    for (arrival, scheduled) in arrivals(phase, rate, thread, threads) {
        tokio::time::sleep_until(scheduled.into()).await;
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(|_| LoadError::Client("the in-flight limit closed".to_owned()))?;
        if Instant::now() >= phase.end {
            // The server fell so far behind that runs scheduled inside the window
            // could not even start in it: count them, rather than start them late.
            let late = (phase.end.saturating_duration_since(scheduled).as_secs_f64() * rate
                / threads as f64)
                .ceil() as u64;
            local.recorder.borrow_mut().errors.insert(
                "runs not started: --max-in-flight reached".to_owned(),
                late.max(1),
            );
            break;
        }
        let mut shopper = Shopper::new(Rc::clone(&local), arrival);
        tokio::task::spawn_local(async move {
            shopper.run(Some(scheduled)).await;
            drop(slot);
        });
    }
    // Every run has finished once all the slots are free again.
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    into_recorder(local)
}

fn local(plan: Arc<Plan>, thread: usize, phase: Phase, http: Http) -> Local {
    let window = phase.end.saturating_duration_since(phase.start);
    let recorder = Recorder::new(
        phase.start,
        window,
        phase.series_len,
        Arc::clone(&plan.live),
    );
    Local {
        http,
        plan,
        recorder: RefCell::new(recorder),
        thread,
        phase,
    }
}

fn into_recorder(local: Rc<Local>) -> Result<Recorder, LoadError> {
    Rc::into_inner(local)
        .map(|local| local.recorder.into_inner())
        .ok_or_else(|| LoadError::Client("a shopper outlived its phase".to_owned()))
}

#[derive(Deserialize)]
struct OrderReply<'a> {
    order_id: &'a str,
    status: &'a str,
}

#[derive(Deserialize)]
struct StatusReply<'a> {
    status: &'a str,
}

struct Shopper {
    local: Rc<Local>,
    rng: SmallRng,
    id: u64,
    /// Runs done, for unique idempotency keys.
    runs: u64,
}

impl Shopper {
    fn new(local: Rc<Local>, id: u64) -> Shopper {
        let seed = (local.thread as u64) << 48 ^ id;
        Shopper {
            local,
            rng: SmallRng::seed_from_u64(seed),
            id,
            runs: 0,
        }
    }

    /// One run of the scenario. `scheduled` is the planned start under open load:
    /// the first request's latency counts from it.
    async fn run(&mut self, scheduled: Option<Instant>) {
        let started = scheduled.unwrap_or_else(Instant::now);
        match self.local.plan.scenario {
            Scenario::Reads => {
                let product = self.pick();
                self.product(product, started).await;
            }
            Scenario::Orders | Scenario::Overload | Scenario::FlashSale => {
                self.order(started).await;
            }
            Scenario::Journey => {
                // Each step goes on even if the one before failed: a shopper who
                // saw an error page still tries to buy.
                self.catalog(started).await;
                let product = self.pick();
                self.product(product, Instant::now()).await;
                let order_started = Instant::now();
                let products = self.more_lines(product);
                if let Some(order_id) = self.place(products, order_started).await {
                    self.follow(&order_id, order_started).await;
                    if self.rng.random_bool(self.local.plan.order_page_share) {
                        self.order_page(&order_id).await;
                    }
                }
            }
        }
        self.runs += 1;
    }

    fn pick(&mut self) -> usize {
        self.local.plan.picker.pick(&mut self.rng)
    }

    /// `first` and as many other products as `--lines` draws, each once (fewer
    /// when there are not that many products).
    fn more_lines(&mut self, first: usize) -> Vec<usize> {
        let (low, high) = self.local.plan.lines;
        let wanted =
            (self.rng.random_range(low..=high) as usize).min(self.local.plan.products.len());
        let mut products = vec![first];
        while products.len() < wanted {
            let product = self.pick();
            if !products.contains(&product) {
                products.push(product);
            }
        }
        products
    }

    async fn order(&mut self, started: Instant) {
        let product = self.pick();
        let products = self.more_lines(product);
        if let Some(order_id) = self.place(products, started).await {
            self.follow(&order_id, started).await;
        }
    }

    async fn healthz(&mut self) {
        let started = Instant::now();
        let reply = self.local.http.get("/healthz").await;
        self.answered(Endpoint::Healthz, started, reply, 200);
    }

    async fn catalog(&mut self, started: Instant) {
        let reply = self.local.http.get("/api/products?limit=20").await;
        self.answered(Endpoint::Catalog, started, reply, 200);
    }

    async fn product(&mut self, product: usize, started: Instant) {
        let path = format!("/api/products/{}", self.local.plan.products[product]);
        let reply = self.local.http.get(&path).await;
        self.answered(Endpoint::Product, started, reply, 200);
    }

    async fn order_page(&mut self, order_id: &str) {
        let started = Instant::now();
        let reply = self.local.http.get(&format!("/orders/{order_id}")).await;
        self.answered(Endpoint::OrderPage, started, reply, 200);
    }

    /// Places an order; answers its id once the server has acknowledged it. A
    /// transport error or a 5xx is retried with the same Idempotency-Key, so a
    /// retry never buys twice and the run learns the id of every order it made.
    async fn place(&mut self, products: Vec<usize>, started: Instant) -> Option<String> {
        let plan = Arc::clone(&self.local.plan);
        let mut quantity = || match plan.quantity {
            Some(quantity) => quantity,
            None => self.rng.random_range(1..=2),
        };
        // One line: the first API's body, as every earlier run measured it.
        let body = match products.as_slice() {
            [product] => format!(
                r#"{{"product_id":"{}","quantity":{}}}"#,
                plan.products[*product],
                quantity()
            ),
            _ => {
                let items: Vec<String> = (products.iter())
                    .map(|product| {
                        let id = &plan.products[*product];
                        format!(r#"{{"product_id":"{id}","quantity":{}}}"#, quantity())
                    })
                    .collect();
                format!(r#"{{"items":[{}]}}"#, items.join(","))
            }
        };
        let key = format!(
            "load-{}-{}-{}-{}",
            plan.run_id, self.local.thread, self.id, self.runs
        );
        let mut attempt_started = started;
        let mut shed = false;
        for _ in 0..POST_ATTEMPTS {
            let reply = self
                .local
                .http
                .post_json("/api/orders", &[("idempotency-key", &key)], body.clone())
                .await;
            // Refused at once, nothing stored: a shed order, not an error.
            shed = matches!(&reply, Ok(reply) if is_overloaded(reply));
            if shed {
                self.local.recorder.borrow_mut().shed(attempt_started);
                if plan.shed_is_final {
                    return None;
                }
                attempt_started = Instant::now();
                continue;
            }
            let retry = match &reply {
                Err(_) => true,
                Ok(reply) => reply.status.is_server_error(),
            };
            if let Some(body) = self.answered(Endpoint::PlaceOrder, attempt_started, reply, 202) {
                return self.accepted(&body, &products, started);
            }
            if !retry {
                return None;
            }
            attempt_started = Instant::now();
        }
        // A last refusal as overloaded created nothing: nothing is unknown.
        if !shed {
            self.local.recorder.borrow_mut().unacknowledged += 1;
        }
        None
    }

    fn accepted(&mut self, body: &[u8], products: &[usize], started: Instant) -> Option<String> {
        let mut recorder = self.local.recorder.borrow_mut();
        let Ok(reply) = serde_json::from_slice::<OrderReply>(body) else {
            recorder.error(Endpoint::PlaceOrder, "unreadable body");
            return None;
        };
        let Ok(uuid) = uuid::Uuid::parse_str(reply.order_id) else {
            recorder.error(Endpoint::PlaceOrder, "unreadable order id");
            return None;
        };
        let index = |product: &usize| u32::try_from(*product).unwrap_or(u32::MAX);
        recorder.placed(PlacedOrder {
            order_id: uuid.as_u128(),
            product: products.first().map_or(u32::MAX, index),
            more: (products.len() > 1).then(|| products[1..].iter().map(index).collect()),
        });
        if let Some(outcome) = Outcome::parse(reply.status) {
            // A replayed order can already be decided.
            recorder.decided(outcome, started);
        }
        Some(reply.order_id.to_owned())
    }

    /// Reads the order every `--poll-ms` until it is decided.
    async fn follow(&mut self, order_id: &str, started: Instant) {
        let path = format!("/api/orders/{order_id}");
        let poll = self.local.plan.poll;
        loop {
            tokio::time::sleep(poll).await;
            if Instant::now() >= self.local.phase.drain_until {
                self.local.recorder.borrow_mut().unfollowed += 1;
                return;
            }
            let asked = Instant::now();
            let reply = self.local.http.get(&path).await;
            let Some(body) = self.answered(Endpoint::Order, asked, reply, 200) else {
                continue;
            };
            let mut recorder = self.local.recorder.borrow_mut();
            match serde_json::from_slice::<StatusReply>(&body) {
                Ok(reply) => {
                    if let Some(outcome) = Outcome::parse(reply.status) {
                        recorder.decided(outcome, started);
                        return;
                    }
                }
                Err(_) => recorder.error(Endpoint::Order, "unreadable body"),
            }
        }
    }

    /// Records an answer: its latency if it has the expected status, an error
    /// otherwise. Answers the body of a good answer.
    fn answered(
        &self,
        endpoint: Endpoint,
        started: Instant,
        reply: Result<Reply, CallError>,
        expected: u16,
    ) -> Option<hyper::body::Bytes> {
        let mut recorder = self.local.recorder.borrow_mut();
        match reply {
            Ok(reply) if reply.status.as_u16() == expected => {
                recorder.request(endpoint, started);
                Some(reply.body)
            }
            Ok(reply) => {
                recorder.error(endpoint, &format!("status {}", reply.status.as_u16()));
                None
            }
            Err(error) => {
                recorder.error(endpoint, &error.to_string());
                None
            }
        }
    }
}

/// A 503 whose problem says `overloaded`: the shop shed the order.
fn is_overloaded(reply: &Reply) -> bool {
    reply.status == 503
        && reply
            .body
            .windows(b"\"overloaded\"".len())
            .any(|window| window == b"\"overloaded\"")
}

/// Open load in segments, one after the other without a pause: each its own
/// rate, duration, plan and [`Recorder`] (a run records into the segment it
/// was scheduled in); at most `max_in_flight` runs at once across them.
///
/// The segments share this thread's connections, and `warm` of them are opened
/// before `start` (with `GET /healthz`), as a gateway keeps its upstream
/// connections open: the figures are the shop's, not those of a storm of
/// connects from a client that had none.
pub async fn open_segments(
    segments: Vec<Segment>,
    thread: usize,
    threads: usize,
    max_in_flight: usize,
    warm: usize,
    start: Instant,
    drain: Duration,
) -> Result<Vec<Recorder>, LoadError> {
    let Some(first) = segments.first() else {
        return Ok(Vec::new());
    };
    let http = Http::new(&first.plan.base);
    futures_util::future::join_all((0..warm).map(|_| http.get("/healthz"))).await;
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut locals = Vec::with_capacity(segments.len());
    let mut segment_start = start;
    for (index, segment) in segments.into_iter().enumerate() {
        // Shoppers of each segment are numbered apart from one another and
        // from closed load's, so that their idempotency keys never meet.
        let numbered_from = (index as u64 + 1) << 40;
        let end = segment_start + segment.duration;
        let phase = Phase {
            start: segment_start,
            end,
            drain_until: end + drain,
            series_len: (segment.duration + drain).as_secs_f64().ceil() as usize + 1,
        };
        let local = Rc::new(local(segment.plan, thread, phase, http.clone()));
        local.recorder.borrow_mut().keep_post_samples = true;
        let mut due = arrivals(phase, segment.rate, thread, threads);
        while let Some((arrival, scheduled)) = due.next() {
            tokio::time::sleep_until(scheduled.into()).await;
            // Only a run that had to wait for a slot past the end is not started
            // (not one whose timer fired a moment late); nor are the rest.
            let free = Arc::clone(&slots).try_acquire_owned().ok();
            let waited = free.is_none();
            let slot = match free {
                Some(slot) => slot,
                None => Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| LoadError::Client("the in-flight limit closed".to_owned()))?,
            };
            if waited && Instant::now() >= phase.end {
                let not_started = 1 + due.count() as u64;
                local.recorder.borrow_mut().errors.insert(
                    "runs not started: --max-in-flight reached".to_owned(),
                    not_started,
                );
                break;
            }
            let mut shopper = Shopper::new(Rc::clone(&local), numbered_from + arrival);
            tokio::task::spawn_local(async move {
                shopper.run(Some(scheduled)).await;
                drop(slot);
            });
        }
        locals.push(local);
        segment_start = end;
    }
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    locals.into_iter().map(into_recorder).collect()
}

/// One segment of [`open_segments`].
pub struct Segment {
    pub plan: Arc<Plan>,
    /// Runs started per second, all threads together.
    pub rate: f64,
    pub duration: Duration,
}

/// Creates (or replaces) the run's products with `stock` units each, `concurrency`
/// at a time.
pub async fn seed(
    base: &str,
    admin_token: &str,
    products: &[String],
    stock: i64,
    concurrency: usize,
) -> Result<(), LoadError> {
    let http = Http::new(base);
    let next = Rc::new(Cell::new(0usize));
    let authorization = format!("Bearer {admin_token}");
    let workers = (0..concurrency.max(1)).map(|_| {
        let (http, next, authorization) = (http.clone(), Rc::clone(&next), authorization.clone());
        async move {
            loop {
                let index = next.get();
                let Some(product_id) = products.get(index) else {
                    return Ok(());
                };
                next.set(index + 1);
                let price = 100 + (index % 50) * 10;
                let body = format!(
                    r#"{{"product_name":"Load product {index}","price":{price},"stock":{stock}}}"#
                );
                let reply = http
                    .post_json(
                        &format!("/api/products/{product_id}"),
                        &[("authorization", &authorization)],
                        body,
                    )
                    .await
                    .map_err(|e| LoadError::Setup(format!("seeding {product_id}: {e}")))?;
                if reply.status != 200 {
                    return Err(LoadError::Setup(format!(
                        "seeding {product_id}: status {}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    )));
                }
            }
        }
    });
    futures_util::future::try_join_all(workers).await?;
    Ok(())
}

/// Waits until `GET /healthz` answers 200, for a deployment that may be starting.
pub async fn wait_healthy(base: &str, patience: Duration) -> Result<(), LoadError> {
    let http = Http::new(base);
    let deadline = Instant::now() + patience;
    loop {
        match http.get("/healthz").await {
            Ok(reply) if reply.status == 200 => return Ok(()),
            outcome if Instant::now() >= deadline => {
                let seen = match outcome {
                    Ok(reply) => format!("status {}", reply.status),
                    Err(error) => error.to_string(),
                };
                return Err(LoadError::Setup(format!(
                    "{base}/healthz is not healthy: {seen}"
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
