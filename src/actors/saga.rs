//! One order's saga: reserve stock, charge, then confirm, or compensate.
//!
//! Every step is idempotent and keyed by the order id (a second `Reserve` finds the
//! reservation, a second `Charge` finds the payment, commit and release are no-ops
//! once done, and an order moves only from the step before the one it moves to),
//! so a saga can be driven again after a crash, or after a failed step, from the
//! step the order is at, and lands in the same place. A step that fails for a
//! passing reason (a busy database) is retried with backoff until the order
//! reaches a terminal status.
//!
//! One process runs at most one saga per order. With several instances, two may
//! run at once for a while (an instance stalled past its lease, and another took
//! the order over). They cannot disagree: Inventory decides once per order whether
//! it gets stock (a refusal is recorded too, and stands even if stock comes back),
//! Payment decides once per order whether it is paid, and the first run to move
//! the order moves it; the other follows from where the order stands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::Instrument;

use super::book::OrderBook;
use super::inventory::{
    CommitReservation, InventoryActor, InventoryError, ReleaseReservation, Reserve,
};
use super::mailbox::Mailbox;
use super::payment::{Charge, ChargeError, PaymentActor};
use tokio::sync::{Notify, broadcast};

use crate::domain::{Order, OrderEvent, OrderId, OrderStep, PaymentStatus, SagaOutcome};
use crate::meters::{self, GaugeGuard};
use crate::store::{OrderMove, Stall, Store, StoreError};
use crate::telemetry::error_chain;

#[derive(Debug, thiserror::Error)]
enum SagaError {
    #[error("inventory step failed")]
    Inventory(#[from] InventoryError),
    #[error("payment step failed")]
    Charge(#[from] ChargeError),
    #[error("recording the order's progress failed")]
    Store(#[from] StoreError),
    #[error("an actor did not answer")]
    Mailbox(#[from] MailboxError),
    #[error("the order is no longer in the store")]
    OrderGone,
}

impl SagaError {
    /// An error that retrying cannot mend: the order's row is corrupt, or
    /// Payment refuses the order as not payable. The saga stalls at once and
    /// waits for an operator's "retry now". (A row that is gone ends the saga.)
    fn is_permanent(&self) -> bool {
        matches!(
            self,
            SagaError::Store(StoreError::Corrupt(_))
                | SagaError::Charge(ChargeError::NotPayable { .. })
        )
    }
}

/// How a saga behaves when its steps keep failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaSettings {
    /// After failing for this long, the order is marked stalled (the saga
    /// goes on retrying, at the longest backoff).
    pub stall_after: Duration,
}

impl Default for SagaSettings {
    fn default() -> Self {
        SagaSettings {
            stall_after: Duration::from_secs(5 * 60),
        }
    }
}

const FIRST_RETRY: Duration = Duration::from_millis(50);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// What a saga needs: the store for the order's own progress, and the actors that
/// own stock and payments.
#[derive(Clone)]
pub(crate) struct Saga {
    store: Store,
    inventory: Mailbox<InventoryActor>,
    payment: Mailbox<PaymentActor>,
    /// Where committed order events are announced to live watchers.
    events: broadcast::Sender<OrderEvent>,
    /// Where readers find the order's committed steps.
    book: OrderBook,
    running: Running,
    settings: SagaSettings,
}

/// The orders whose saga runs in this process, each with a bell that ends its
/// wait before the next retry.
#[derive(Clone, Default)]
struct Running(Arc<Mutex<HashMap<OrderId, Arc<Notify>>>>);

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrderId, Arc<Notify>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that the order's saga runs here until the answer is dropped; `None`
    /// when it already does.
    fn enter(&self, order_id: OrderId) -> Option<RunningSaga> {
        let mut running = self.lock();
        if running.contains_key(&order_id) {
            return None;
        }
        let bell = Arc::new(Notify::new());
        running.insert(order_id, Arc::clone(&bell));
        Some(RunningSaga {
            running: self.clone(),
            order_id,
            bell,
            _counted: GaugeGuard::new(metrics::gauge!(meters::SAGAS_RUNNING)),
        })
    }
}

/// One entry of [`Running`], removed when the saga ends (or its task is dropped).
struct RunningSaga {
    running: Running,
    order_id: OrderId,
    bell: Arc<Notify>,
    /// `minimart_sagas_running`: the size of every saga's `Running` set of the process.
    _counted: GaugeGuard,
}

impl Drop for RunningSaga {
    fn drop(&mut self) {
        self.running.lock().remove(&self.order_id);
    }
}

impl Saga {
    pub(crate) fn new(
        store: Store,
        inventory: Mailbox<InventoryActor>,
        payment: Mailbox<PaymentActor>,
        events: broadcast::Sender<OrderEvent>,
        book: OrderBook,
        settings: SagaSettings,
    ) -> Self {
        Saga {
            store,
            inventory,
            payment,
            events,
            book,
            running: Running::default(),
            settings,
        }
    }

    /// The orders whose saga runs in this process now.
    pub(crate) fn running(&self) -> Vec<OrderId> {
        self.running.lock().keys().copied().collect()
    }

    /// Ends the wait of the order's saga before its next retry, if it runs here.
    pub(crate) fn retry_now(&self, order_id: OrderId) -> bool {
        let bell = self.running.lock().get(&order_id).cloned();
        bell.inspect(|bell| bell.notify_one()).is_some()
    }

    /// Drives the order to a terminal status, retrying failed steps. Does nothing
    /// when the order's saga already runs in this process.
    /// `request_id` is the placing request's, for the saga's log lines (a saga
    /// resumed after a restart has none).
    pub(crate) async fn run(self, order: Order, request_id: Option<String>) {
        let span = tracing::info_span!(
            "saga",
            order_id = %order.order_id,
            request_id = tracing::field::Empty
        );
        if let Some(request_id) = request_id {
            span.record("request_id", request_id);
        }
        async move {
            let Some(running) = self.running.enter(order.order_id) else {
                tracing::debug!("the saga already runs here");
                return;
            };
            let mut wait = FIRST_RETRY;
            // Where the order stands as far as this run knows: a retry goes on
            // from the last step that was committed.
            let mut step = order.step;
            // Since when the saga has failed at this step, and whether it said so.
            let mut failing: Option<(OrderStep, Instant)> = None;
            let mut stalled = false;
            let mut _counted_stalled: Option<GaugeGuard> = None;
            loop {
                let error = match self.drive(&order, &mut step).await {
                    Ok(()) => {
                        tracing::info!(outcome = step.as_str(), "order decided");
                        return;
                    }
                    // Nothing left to drive, nor to show an operator.
                    Err(SagaError::OrderGone) => {
                        tracing::error!("the order's row is gone: its saga ends");
                        return;
                    }
                    Err(error) => error,
                };
                let since = match failing {
                    Some((at, since)) if at == step => since,
                    _ => {
                        // A step further on: its own failures, from the start.
                        (wait, stalled) = (FIRST_RETRY, false);
                        _counted_stalled = None;
                        Instant::now()
                    }
                };
                failing = Some((step, since));
                let permanent = error.is_permanent();
                if !stalled && (permanent || since.elapsed() >= self.settings.stall_after) {
                    stalled = self.stall(order.order_id, &error).await;
                    // `minimart_sagas_stalled`: this saga, until it moves on or ends.
                    _counted_stalled = stalled
                        .then(|| GaugeGuard::new(metrics::gauge!(meters::SAGAS_STALLED)));
                }
                let pause = if stalled { LONGEST_RETRY } else { jittered(wait) };
                tracing::warn!(error = %error_chain(&error), retry_in = ?pause, permanent, "saga step failed");
                if permanent {
                    // Retrying cannot mend it: wait for the operator.
                    running.bell.notified().await;
                } else {
                    tokio::select! {
                        () = actix_rt::time::sleep(pause) => {}
                        () = running.bell.notified() => tracing::info!("retrying now, as asked"),
                    }
                }
                wait = (wait * 2).min(LONGEST_RETRY);
            }
        }
        .instrument(span)
        .await
    }

    /// Marks the order stalled with the error, for the operator; true when done.
    async fn stall(&self, order_id: OrderId, error: &SagaError) -> bool {
        let stall = Stall {
            order_id,
            error: error_chain(error),
            at: chrono::Utc::now(),
        };
        match self.store.stall(stall).await {
            Ok(marked) => {
                tracing::error!(error = %error_chain(error), "saga stalled: the order needs an operator");
                marked
            }
            // The database itself may be why the saga fails: say so, try again later.
            Err(store) => {
                tracing::warn!(error = %error_chain(&store), "could not mark the saga stalled");
                false
            }
        }
    }

    /// Drives the order from `step`, one arrow of the state machine at a time,
    /// until it is decided; `step` follows it. Each pending step waits on its own
    /// outcome, and [`OrderStep::next`] says where that outcome leads.
    async fn drive(&self, order: &Order, step: &mut OrderStep) -> Result<(), SagaError> {
        loop {
            *step = match *step {
                OrderStep::Placed => self.reserve(order).await?,
                // The order as this run has moved it, for Payment to judge.
                OrderStep::Reserved => {
                    self.charge(&Order {
                        step: *step,
                        ..order.clone()
                    })
                    .await?
                }
                // No arrow leaves the other steps: the order is decided.
                _ => return Ok(()),
            };
        }
    }

    /// PLACED: hold the stock, or reject the order for want of it. Inventory
    /// moves the order in the commit that decides its stock.
    async fn reserve(&self, order: &Order) -> Result<OrderStep, SagaError> {
        let reserved = self
            .inventory
            .send(Reserve {
                order_id: order.order_id,
                lines: order.items(),
                advance_order: true,
            })
            .await??;
        self.moved(order, reserved.moved).await
    }

    /// RESERVED: charge, then take the stock for good or give it back, moving
    /// the order in the same commit.
    async fn charge(&self, order: &Order) -> Result<OrderStep, SagaError> {
        let payment = self
            .payment
            .send(Charge {
                order: order.clone(),
                amount: order.total_amount,
            })
            .await??;
        let arrow = |outcome, reason| {
            let step = OrderStep::Reserved.next(outcome);
            step.map(|step| OrderMove { step, reason })
        };
        let moved = match payment.status {
            PaymentStatus::Succeeded => {
                let then = arrow(SagaOutcome::Paid, None);
                self.inventory
                    .send(CommitReservation {
                        order_id: order.order_id,
                        then,
                    })
                    .await??
            }
            PaymentStatus::Declined => {
                // Stock goes back in the commit that makes the order final: a
                // crash before it leaves a pending order that is driven again.
                let reason = Some(payment.declined_reason());
                let then = arrow(SagaOutcome::Declined, reason);
                self.inventory
                    .send(ReleaseReservation {
                        order_id: order.order_id,
                        then,
                    })
                    .await??
            }
        };
        self.moved(order, moved).await
    }

    /// Answers the step the order is at now: the one it moved to, or, when it was
    /// not at the step before (the move did not apply), wherever it stands.
    async fn moved(
        &self,
        order: &Order,
        moved: Option<OrderEvent>,
    ) -> Result<OrderStep, SagaError> {
        if let Some(event) = moved {
            // The book first: whoever hears the event and reads the order
            // must find it at this step.
            self.book
                .advance(order.order_id, event.step, event.reason.clone(), event.at);
            let step = event.step;
            let status = step.status();
            if status.is_terminal() {
                // This run moved the order to its outcome: this process decided it.
                metrics::counter!(meters::ORDERS_DECIDED, "status" => status.as_str()).increment(1);
                let took = (event.at - order.created_at).to_std().unwrap_or_default();
                metrics::histogram!(meters::ORDER_OUTCOME, "status" => status.as_str())
                    .record(took);
            }
            // Nobody watching is fine: the event is recorded with the order.
            let _ = self.events.send(event);
            return Ok(step);
        }
        // Driven again after a crash, the order may be at this step already; or
        // another run of its saga (an instance that took over a stalled one) moved
        // it first. The two runs agree on the outcome, because stock and payment
        // are each decided once per order; the database knows where the order
        // stands better than the book does.
        self.book.forget(order.order_id);
        let now = self
            .store
            .order(order.order_id)
            .await?
            .ok_or(SagaError::OrderGone)?;
        Ok(now.step)
    }
}

/// Between half of `wait` and all of it, so that sagas that failed together do
/// not all retry at the same instant.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(rand::random_range(0.5..=1.0))
}
