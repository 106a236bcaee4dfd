//! The order book: the orders whose saga runs in this process, each as last
//! committed, plus those decided in the last moments. A shopper follows an order
//! by reading it again and again while its saga runs; those reads are answered
//! from here, without a message or a database read, so that following orders
//! does not queue behind the sagas it is waiting for (the same reason the catalog
//! is a snapshot).
//!
//! An entry changes only after the commit of the change it shows, and while an
//! order has an entry every read of it comes from the entry, so a reader never
//! sees an order go back. Orders without an entry (older ones, or ones whose saga
//! runs in another process) are read from the database.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::{Order, OrderId, OrderStep};

/// How long a decided order stays: long enough for the read that follows its
/// decision, short enough that the book stays small under any load.
const KEEP_DECIDED: Duration = Duration::from_secs(2);
/// At most this many decided orders are kept, whatever the rate.
const MAX_DECIDED: usize = 32 * 1024;

/// With other instances on the database (Postgres), the book still holds only
/// this process's sagas, each kept current by the lease its instance renews
/// while the saga runs; should another instance take a saga over after this one
/// stalled past its lease, the saga here finds the order moved, and forgets it.
#[derive(Clone, Default)]
pub struct OrderBook {
    book: Arc<Mutex<Book>>,
}

#[derive(Default)]
struct Book {
    orders: HashMap<OrderId, Order>,
    /// Decided orders, oldest first, with when they were decided.
    decided: VecDeque<(Instant, OrderId)>,
}

impl OrderBook {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The order as last committed, if its saga runs here (or just ended here).
    pub fn get(&self, order_id: OrderId) -> Option<Order> {
        self.book().orders.get(&order_id).cloned()
    }

    /// Starts following an order whose saga is about to run here.
    pub(crate) fn track(&self, order: Order) {
        let mut book = self.book();
        let order_id = order.order_id;
        let decided = order.status().is_terminal();
        book.orders.insert(order_id, order);
        if decided {
            book.decide(order_id);
        }
    }

    /// Records a committed step.
    pub(crate) fn advance(
        &self,
        order_id: OrderId,
        step: OrderStep,
        reason: Option<String>,
        at: DateTime<Utc>,
    ) {
        let mut book = self.book();
        let Some(order) = book.orders.get_mut(&order_id) else {
            return;
        };
        order.step = step;
        order.reason = reason;
        order.updated_at = at;
        if step.status().is_terminal() {
            book.decide(order_id);
        }
    }

    /// Stops answering for an order: the database knows better (its step was
    /// moved by someone else).
    pub(crate) fn forget(&self, order_id: OrderId) {
        self.book().orders.remove(&order_id);
    }
}

impl Book {
    fn decide(&mut self, order_id: OrderId) {
        let now = Instant::now();
        self.decided.push_back((now, order_id));
        while let Some(&(at, oldest)) = self.decided.front() {
            if now.duration_since(at) < KEEP_DECIDED && self.decided.len() <= MAX_DECIDED {
                break;
            }
            self.decided.pop_front();
            // An order that was decided and then tracked again (a replayed resume)
            // may be pending once more: only remove it if it is still decided.
            if self
                .orders
                .get(&oldest)
                .is_some_and(|order| order.status().is_terminal())
            {
                self.orders.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Money;

    fn order(step: OrderStep) -> Order {
        let now = Utc::now();
        Order {
            order_id: OrderId::generate(),
            lines: vec![crate::actors::testing::tea_line(1)],
            payment_method: None,
            total_amount: Money::from_cents(350),
            step,
            reason: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_tracked_order_shows_its_committed_steps() {
        let book = OrderBook::default();
        let placed = order(OrderStep::Placed);
        let order_id = placed.order_id;
        assert!(book.get(order_id).is_none());

        book.track(placed);
        book.advance(order_id, OrderStep::Reserved, None, Utc::now());
        assert_eq!(book.get(order_id).unwrap().step, OrderStep::Reserved);

        book.advance(order_id, OrderStep::Confirmed, None, Utc::now());
        assert_eq!(book.get(order_id).unwrap().step, OrderStep::Confirmed);
    }

    #[test]
    fn decided_orders_leave_the_book_after_a_while() {
        let book = OrderBook::default();
        let first = order(OrderStep::Placed);
        let first_id = first.order_id;
        book.track(first);
        book.advance(first_id, OrderStep::Confirmed, None, Utc::now());
        // Pretend it was decided long ago; the next decision sweeps it out.
        book.book().decided[0].0 -= KEEP_DECIDED * 2;

        let second = order(OrderStep::Placed);
        let second_id = second.order_id;
        book.track(second);
        book.advance(second_id, OrderStep::Rejected, None, Utc::now());
        assert!(book.get(first_id).is_none());
        assert!(book.get(second_id).is_some());
    }

    #[test]
    fn a_forgotten_order_is_read_elsewhere() {
        let book = OrderBook::default();
        let placed = order(OrderStep::Placed);
        let order_id = placed.order_id;
        book.track(placed);
        book.forget(order_id);
        assert!(book.get(order_id).is_none());
        // A late step for an order no longer followed changes nothing.
        book.advance(order_id, OrderStep::Reserved, None, Utc::now());
        assert!(book.get(order_id).is_none());
    }
}
