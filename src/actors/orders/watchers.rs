//! Who follows which order live: each watcher is registered under its order's id,
//! and an event committed for an order is handed to that order's watchers only.
//!
//! The saga publishes every order's events on one broadcast (and, with Postgres,
//! the store feeds other instances' events into it too). One dispatcher reads that
//! bus and hands each event to its order's watchers, so a watcher is woken by its
//! own order alone, however many other orders are moving.
//!
//! A watcher that is not keeping up (its backlog full) is dropped, and so is every
//! watcher when the dispatcher itself falls behind the bus: their feeds end, and
//! they catch up from the recorded events with a new watch. A watcher's entry goes
//! when its [`Watch`] is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use crate::domain::{OrderEvent, OrderId};

/// How many of its order's events a watcher may leave unread before it is
/// dropped. An order has a handful of events in all.
const WATCHER_BACKLOG: usize = 32;

/// The watchers, by order.
#[derive(Clone, Default)]
pub struct Watchers {
    registry: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    by_order: HashMap<OrderId, Vec<Watcher>>,
}

struct Watcher {
    id: u64,
    events: mpsc::Sender<OrderEvent>,
}

/// One watcher's feed of its order's events, from its registration on.
pub struct Watch {
    events: mpsc::Receiver<OrderEvent>,
    order_id: OrderId,
    id: u64,
    registry: Weak<Mutex<Registry>>,
}

impl Watchers {
    /// Registers a watcher of `order_id`: every event of the order delivered from
    /// now on reaches it.
    pub fn watch(&self, order_id: OrderId) -> Watch {
        let (sender, events) = mpsc::channel(WATCHER_BACKLOG);
        let mut registry = lock(&self.registry);
        let id = registry.next_id;
        registry.next_id += 1;
        registry
            .by_order
            .entry(order_id)
            .or_default()
            .push(Watcher { id, events: sender });
        Watch {
            events,
            order_id,
            id,
            registry: Arc::downgrade(&self.registry),
        }
    }

    /// Hands `event` to its order's watchers, and to nobody else. A watcher whose
    /// backlog is full is dropped (its feed ends once it has read what it holds).
    pub fn deliver(&self, event: &OrderEvent) {
        let mut registry = lock(&self.registry);
        let Some(watchers) = registry.by_order.get_mut(&event.order_id) else {
            return;
        };
        watchers.retain(|watcher| watcher.events.try_send(event.clone()).is_ok());
        if watchers.is_empty() {
            registry.by_order.remove(&event.order_id);
        }
    }

    /// Ends every watcher's feed.
    pub fn end_all(&self) {
        lock(&self.registry).by_order.clear();
    }

    /// How many watchers there are, of all orders.
    pub fn count(&self) -> usize {
        lock(&self.registry).by_order.values().map(Vec::len).sum()
    }

    /// Hands each event of the bus to its order's watchers, until the bus closes.
    /// Falling behind the bus loses events nobody can tell apart: every watcher's
    /// feed ends then.
    pub async fn dispatch(self, mut bus: broadcast::Receiver<OrderEvent>) {
        loop {
            match bus.recv().await {
                Ok(event) => self.deliver(&event),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        watchers = self.count(),
                        "order events came faster than they could be handed to their watchers: every live order stream ends, and catches up when it reconnects"
                    );
                    self.end_all();
                }
                Err(RecvError::Closed) => {
                    self.end_all();
                    return;
                }
            }
        }
    }
}

impl Watch {
    /// The order's next event; `None` once the feed has ended (dropped for lagging,
    /// or the shop stopping).
    pub async fn recv(&mut self) -> Option<OrderEvent> {
        self.events.recv().await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut registry = lock(&registry);
        if let Some(watchers) = registry.by_order.get_mut(&self.order_id) {
            watchers.retain(|watcher| watcher.id != self.id);
            if watchers.is_empty() {
                registry.by_order.remove(&self.order_id);
            }
        }
    }
}

/// The registry is consistent after any panic (each change is one map or vector
/// operation), so a poisoned lock is simply taken.
fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::domain::OrderStep;

    fn event(order_id: OrderId, seq: u32) -> OrderEvent {
        OrderEvent {
            order_id,
            seq,
            step: OrderStep::Placed,
            reason: None,
            at: Utc::now(),
        }
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Wakes {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    async fn next(watch: &mut Watch) -> Option<OrderEvent> {
        tokio::time::timeout(Duration::from_secs(5), watch.recv())
            .await
            .expect("the feed answers")
    }

    #[actix_rt::test]
    async fn a_watcher_is_woken_by_its_own_orders_events_only() {
        let watchers = Watchers::default();
        let (bus, _) = broadcast::channel(64);
        actix_rt::spawn(watchers.clone().dispatch(bus.subscribe()));
        let (a, b) = (OrderId::generate(), OrderId::generate());
        let mut watch_a = watchers.watch(a);
        let mut watch_b = watchers.watch(b);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(watch_a.events.poll_recv(&mut cx).is_pending());

        for seq in 1..=20 {
            bus.send(event(b, seq)).unwrap();
        }
        for seq in 1..=20 {
            assert_eq!(next(&mut watch_b).await.unwrap().seq, seq);
        }
        assert_eq!(wakes.count(), 0, "B's events did not wake A's watcher");
        assert!(watch_a.events.poll_recv(&mut cx).is_pending());

        bus.send(event(a, 1)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while wakes.count() == 0 {
            assert!(std::time::Instant::now() < deadline, "A's event woke A");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match watch_a.events.poll_recv(&mut cx) {
            Poll::Ready(Some(got)) => assert_eq!((got.order_id, got.seq), (a, 1)),
            other => panic!("A's event, not {other:?}"),
        }
        assert!(
            watch_b.events.try_recv().is_err(),
            "and B heard nothing of it"
        );
    }

    #[test]
    fn a_watcher_is_forgotten_when_its_watch_is_dropped() {
        let watchers = Watchers::default();
        let (a, b) = (OrderId::generate(), OrderId::generate());
        let first = watchers.watch(a);
        let second = watchers.watch(a);
        let other = watchers.watch(b);
        assert_eq!(watchers.count(), 3);

        drop(first);
        assert_eq!(watchers.count(), 2);
        drop(second);
        drop(other);
        assert_eq!(watchers.count(), 0);
        assert!(
            lock(&watchers.registry).by_order.is_empty(),
            "no order left"
        );
    }

    #[actix_rt::test]
    async fn a_watcher_that_does_not_keep_up_is_dropped() {
        let watchers = Watchers::default();
        let a = OrderId::generate();
        let mut watch = watchers.watch(a);
        let backlog = u32::try_from(WATCHER_BACKLOG).unwrap();
        for seq in 1..=backlog + 1 {
            watchers.deliver(&event(a, seq));
        }
        assert_eq!(watchers.count(), 0);
        for seq in 1..=backlog {
            assert_eq!(next(&mut watch).await.unwrap().seq, seq);
        }
        assert!(next(&mut watch).await.is_none(), "then its feed ends");
    }

    #[actix_rt::test]
    async fn a_dispatcher_behind_the_bus_ends_every_feed() {
        let watchers = Watchers::default();
        let (bus, lagging) = broadcast::channel(2);
        let (a, b) = (OrderId::generate(), OrderId::generate());
        let mut watch_a = watchers.watch(a);
        let mut watch_b = watchers.watch(b);
        for seq in 1..=5 {
            bus.send(event(a, seq)).unwrap();
        }
        actix_rt::spawn(watchers.clone().dispatch(lagging));

        assert!(next(&mut watch_a).await.is_none());
        assert!(next(&mut watch_b).await.is_none());
        assert_eq!(watchers.count(), 0);
    }

    #[actix_rt::test]
    async fn a_closed_bus_ends_every_feed() {
        let watchers = Watchers::default();
        let (bus, receiver) = broadcast::channel(2);
        let mut watch = watchers.watch(OrderId::generate());
        let dispatcher = actix_rt::spawn(watchers.clone().dispatch(receiver));
        drop(bus);

        assert!(next(&mut watch).await.is_none());
        dispatcher.await.unwrap();
        assert_eq!(watchers.count(), 0);
    }
}
