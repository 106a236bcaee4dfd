//! Admission control: a bound on the orders in flight, so that the shop keeps
//! doing fast the work it can do and refuses the rest at once instead of
//! queueing it. An order is in flight from the moment its request is admitted
//! until its saga decides it (or the request fails, or turns out to be a
//! replay); every message and store job an order causes waits behind at most
//! `max_in_flight` others of its kind, so no queue of the shop grows without
//! limit. Above the bound a new order is refused before anything is stored.
//!
//! A second guard catches what the bound cannot: a request that has waited in
//! a queue (the Orders mailbox, the store's write queue) longer than the queue
//! deadline is refused rather than served late, like CoDel's sojourn time. The
//! bound is configured, not adaptive: see the README (Configuration, "Load
//! testing") for how its default was measured and why.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::meters::{self, GaugeGuard};

/// How much work the shop admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Orders accepted and not yet decided (their requests included), at most.
    pub max_in_flight: usize,
    /// The longest a new order may wait in a queue before it is refused.
    pub queue_deadline: Duration,
}

impl AdmissionSettings {
    /// What start-up uses unless configured (see `config.rs` for why).
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
    pub const DEFAULT_QUEUE_DEADLINE: Duration = Duration::from_millis(500);
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
    #[error("the shop is at its limit of {limit} orders in flight: retry after 1 s")]
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

/// The shop's count of orders in flight; cheap to clone, shared by every
/// HTTP worker.
#[derive(Clone)]
pub struct Admission {
    in_flight: Arc<AtomicUsize>,
    settings: AdmissionSettings,
    /// `minimart_orders_in_flight`, looked up once (a lookup per order costs).
    gauge: metrics::Gauge,
}

impl Admission {
    pub fn new(settings: AdmissionSettings) -> Admission {
        Admission {
            in_flight: Arc::new(AtomicUsize::new(0)),
            settings,
            gauge: metrics::gauge!(meters::ORDERS_IN_FLIGHT),
        }
    }

    pub fn settings(&self) -> AdmissionSettings {
        self.settings
    }

    /// Orders in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Admits one more order, or refuses it at once when the bound is reached.
    /// The order stays in flight until the answer is dropped.
    pub fn admit(&self) -> Result<Admitted, Overloaded> {
        let limit = self.settings.max_in_flight;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| Overloaded::InFlight { limit }.count())?;
        Ok(Admitted {
            in_flight: Arc::clone(&self.in_flight),
            arrived: Instant::now(),
            deadline: self.settings.queue_deadline,
            _counted: GaugeGuard::new(self.gauge.clone()),
        })
    }
}

/// One admitted order, in flight until dropped: the request holds it until
/// the order is stored, then the order's saga until it is decided.
pub struct Admitted {
    in_flight: Arc<AtomicUsize>,
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
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
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
