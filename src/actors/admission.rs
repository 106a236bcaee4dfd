//! Admission control: a bound on the orders in flight, so that the shop keeps
//! doing fast the work it can do and refuses the rest at once instead of
//! queueing it. An order is in flight from the moment its request is admitted
//! until its saga decides it (or the request fails, or turns out to be a
//! replay); every message and store job an order causes waits behind at most
//! the bound's others of its kind, so no queue of the shop grows without limit.
//! Above the bound a new order is refused before anything is stored.
//!
//! The bound follows the shop's own latency: the time an admitted order takes
//! to be stored (the Orders mailbox, the store's write queue, the commit),
//! which the payment provider's latency does not enter. It starts at
//! `max_in_flight`, so a burst on a quiet shop is admitted whole; it halves
//! while orders are being refused and storing is slow (the shop is overloaded
//! and its queues grow), never below [`AdmissionSettings::FLOOR`], and grows
//! back while storing is fast (see `next_limit`, and the README's Overload
//! section).
//!
//! A second guard catches what the bound cannot: a request that has waited in
//! a queue (the Orders mailbox, the store's write queue) longer than the queue
//! deadline is refused rather than served late, like CoDel's sojourn time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::meters::{self, GaugeGuard};

/// How much work the shop admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Orders accepted and not yet decided (their requests included), at most:
    /// the ceiling of the bound.
    pub max_in_flight: usize,
    /// The longest a new order may wait in a queue before it is refused.
    pub queue_deadline: Duration,
}

impl AdmissionSettings {
    /// What start-up uses unless configured (see `config.rs` for why).
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
    pub const DEFAULT_QUEUE_DEADLINE: Duration = Duration::from_millis(500);
    /// The bound at its lowest (or `max_in_flight`, if lower): as many orders
    /// as the load benchmark's closed load keeps in flight.
    pub const FLOOR: usize = 64;
    /// The mean time to store an admitted order above which a bound that
    /// refuses orders shrinks; under half of it, the bound grows.
    pub const TARGET: Duration = Duration::from_millis(20);
    /// How often the bound moves, at most.
    pub const WINDOW: Duration = Duration::from_millis(100);
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            queue_deadline: Self::DEFAULT_QUEUE_DEADLINE,
        }
    }
}

/// Why a new order was refused. Nothing was stored: the same request (and its
/// `Idempotency-Key`) may be sent again after [`Overloaded::RETRY_AFTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    #[error("the shop is at its limit of {limit} orders in flight now: retry after 1 s")]
    InFlight { limit: usize },
    #[error(
        "the order waited {waited_ms} ms in a queue, longer than its deadline of {deadline_ms} ms: retry after 1 s"
    )]
    Late { waited_ms: u128, deadline_ms: u128 },
}

impl Overloaded {
    /// What a refused client is told to wait (`Retry-After`), in seconds: the
    /// orders in flight at the limit are decided in well under a second when
    /// the shop is healthy.
    pub const RETRY_AFTER: Duration = Duration::from_secs(1);

    /// The `reason` label of `minimart_orders_shed_total`.
    fn reason(&self) -> &'static str {
        match self {
            Overloaded::InFlight { .. } => "in_flight",
            Overloaded::Late { .. } => "deadline",
        }
    }

    /// Counts the refusal in `minimart_orders_shed_total{reason}`.
    pub fn count(self) -> Self {
        metrics::counter!(meters::ORDERS_SHED, "reason" => self.reason()).increment(1);
        self
    }
}

/// The shop's count of orders in flight and its bound; cheap to clone, shared
/// by every HTTP worker.
#[derive(Clone)]
pub struct Admission {
    bound: Arc<Bound>,
    settings: AdmissionSettings,
    /// `minimart_orders_in_flight`, looked up once (a lookup per order costs).
    gauge: metrics::Gauge,
}

impl Admission {
    pub fn new(settings: AdmissionSettings) -> Admission {
        Admission {
            bound: Arc::new(Bound::new(settings.max_in_flight, Instant::now())),
            settings,
            gauge: metrics::gauge!(meters::ORDERS_IN_FLIGHT),
        }
    }

    pub fn settings(&self) -> AdmissionSettings {
        self.settings
    }

    /// Orders in flight now.
    pub fn in_flight(&self) -> usize {
        self.bound.in_flight.load(Ordering::Relaxed)
    }

    /// The bound in force now.
    pub fn limit(&self) -> usize {
        self.bound.current.load(Ordering::Relaxed)
    }

    /// Admits one more order, or refuses it at once when the bound is reached.
    /// The order stays in flight until the answer is dropped.
    pub fn admit(&self) -> Result<Admitted, Overloaded> {
        let limit = self.limit();
        self.bound
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| {
                self.bound.refused.store(true, Ordering::Relaxed);
                Overloaded::InFlight { limit }.count()
            })?;
        Ok(Admitted {
            bound: Arc::clone(&self.bound),
            arrived: Instant::now(),
            deadline: self.settings.queue_deadline,
            _counted: GaugeGuard::new(self.gauge.clone()),
        })
    }
}

/// The orders in flight, their bound, and the window of store times it moves by.
struct Bound {
    in_flight: AtomicUsize,
    /// The bound in force, within `floor ..= ceiling`.
    current: AtomicUsize,
    floor: usize,
    ceiling: usize,
    /// An order was refused since the window opened: the shop is at its bound.
    refused: AtomicBool,
    window: Mutex<Window>,
}

struct Window {
    opened: Instant,
    stored: u32,
    took: Duration,
}

impl Window {
    fn opened(now: Instant) -> Window {
        Window {
            opened: now,
            stored: 0,
            took: Duration::ZERO,
        }
    }
}

impl Bound {
    fn new(ceiling: usize, now: Instant) -> Bound {
        Bound {
            in_flight: AtomicUsize::new(0),
            current: AtomicUsize::new(ceiling),
            floor: AdmissionSettings::FLOOR.min(ceiling),
            ceiling,
            refused: AtomicBool::new(false),
            window: Mutex::new(Window::opened(now)),
        }
    }

    /// One admitted order was stored `took` after its admission; at the end
    /// of a window the bound moves.
    fn stored(&self, took: Duration, now: Instant) {
        let Ok(mut window) = self.window.lock() else {
            return;
        };
        window.stored += 1;
        window.took += took;
        if now.duration_since(window.opened) < AdmissionSettings::WINDOW {
            return;
        }
        let mean = window.took / window.stored;
        let refused = self.refused.swap(false, Ordering::Relaxed);
        let current = self.current.load(Ordering::Relaxed);
        let next = next_limit(current, mean, refused, self.floor, self.ceiling);
        if next != current {
            tracing::debug!(
                from = current,
                to = next,
                mean_store_ms = mean.as_secs_f64() * 1e3,
                "orders in flight: bound moved"
            );
            self.current.store(next, Ordering::Relaxed);
        }
        *window = Window::opened(now);
    }
}

/// The bound after a window whose admitted orders took `mean` to be stored:
/// halved when orders were refused and storing was slower than
/// [`AdmissionSettings::TARGET`] (overloaded: the shop's queues are growing;
/// a burst that stays under the bound is not refused, however slow), an eighth
/// higher when storing took under half the target (the shop has room),
/// otherwise as it was; always between `floor` and `ceiling`.
fn next_limit(
    current: usize,
    mean: Duration,
    refused: bool,
    floor: usize,
    ceiling: usize,
) -> usize {
    let next = if refused && mean > AdmissionSettings::TARGET {
        current / 2
    } else if mean < AdmissionSettings::TARGET / 2 {
        current + current / 8 + 1
    } else {
        current
    };
    next.clamp(floor, ceiling)
}

/// One admitted order, in flight until dropped: the request holds it until
/// the order is stored, then the order's saga until it is decided.
pub struct Admitted {
    bound: Arc<Bound>,
    arrived: Instant,
    deadline: Duration,
    /// `minimart_orders_in_flight`.
    _counted: GaugeGuard,
}

impl Admitted {
    /// An order that waited longer than its deadline since it was admitted is
    /// refused (nothing of it is stored yet).
    pub fn check_deadline(&self) -> Result<(), Overloaded> {
        let waited = self.arrived.elapsed();
        if waited > self.deadline {
            return Err(Overloaded::Late {
                waited_ms: waited.as_millis(),
                deadline_ms: self.deadline.as_millis(),
            }
            .count());
        }
        Ok(())
    }

    /// The order is stored: the time it took moves the bound.
    pub fn stored(&self) {
        let now = Instant::now();
        self.bound.stored(now.duration_since(self.arrived), now);
    }

    /// The latest moment its first write may leave the store's queue.
    pub fn not_after(&self) -> Instant {
        self.arrived + self.deadline
    }

    /// The refusal of an order whose write waited past [`Admitted::not_after`].
    pub fn late(&self) -> Overloaded {
        Overloaded::Late {
            waited_ms: self.arrived.elapsed().as_millis(),
            deadline_ms: self.deadline.as_millis(),
        }
        .count()
    }
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("arrived", &self.arrived)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.bound.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_refuses_at_once_and_frees_a_place_when_an_order_ends() {
        let admission = Admission::new(AdmissionSettings {
            max_in_flight: 2,
            queue_deadline: Duration::from_secs(1),
        });
        let first = admission.admit();
        let second = admission.admit();
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(
            admission.admit().map(|_| ()),
            Err(Overloaded::InFlight { limit: 2 })
        );
        drop(first);
        assert_eq!(admission.in_flight(), 1);
        assert!(admission.admit().is_ok());
    }

    #[test]
    fn the_bound_halves_when_refusing_and_slow_and_grows_when_fast() {
        let (floor, ceiling) = (64, 1024);
        let slow = AdmissionSettings::TARGET * 2;
        let fast = AdmissionSettings::TARGET / 4;
        let middling = AdmissionSettings::TARGET * 3 / 4;
        assert_eq!(next_limit(400, slow, true, floor, ceiling), 200);
        // Slow but refusing nobody: a burst under the bound, not an overload.
        assert_eq!(next_limit(400, slow, false, floor, ceiling), 400);
        assert_eq!(next_limit(100, slow, true, floor, ceiling), floor);
        assert_eq!(next_limit(400, fast, true, floor, ceiling), 451);
        assert_eq!(next_limit(400, fast, false, floor, ceiling), 451);
        assert_eq!(next_limit(1000, fast, false, floor, ceiling), ceiling);
        assert_eq!(next_limit(400, middling, true, floor, ceiling), 400);
    }

    #[test]
    fn the_bound_starts_at_the_ceiling_and_follows_the_windows() {
        let start = Instant::now();
        let bound = Bound::new(1024, start);
        let current = || bound.current.load(Ordering::Relaxed);
        assert_eq!(current(), 1024);
        // Refusing and slow: halved once per window, not per order, to the floor.
        let slow = AdmissionSettings::TARGET * 3;
        let mut now = start;
        for expected in [512, 256, 128, 64, 64] {
            bound.refused.store(true, Ordering::Relaxed);
            for _ in 0..10 {
                bound.stored(slow, now);
            }
            now += AdmissionSettings::WINDOW;
            bound.stored(slow, now);
            assert_eq!(current(), expected);
        }
        // Then fast: back up an eighth a window.
        for expected in [73, 83, 94] {
            now += AdmissionSettings::WINDOW;
            bound.stored(AdmissionSettings::TARGET / 4, now);
            assert_eq!(current(), expected);
        }
        // A ceiling under the floor is the bound, fixed.
        assert_eq!(Bound::new(2, start).current.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_order_that_waited_past_its_deadline_is_late() {
        let admission = Admission::new(AdmissionSettings {
            max_in_flight: 1,
            queue_deadline: Duration::ZERO,
        });
        let admitted = admission.admit().expect("a place");
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(
            admitted.check_deadline(),
            Err(Overloaded::Late { .. })
        ));
    }
}
