//! The Payment actor: a simulated payment provider, and the owner of payments.
//!
//! `Charge` is idempotent per order. The first charge for an order decides
//! (SUCCEEDED or DECLINED) and is recorded; every later charge for that order gets
//! the recorded payment back. Charges for the same order and amount that overlap in
//! time, such as the saga's own and a client's `POST /api/payments`, are joined: the
//! later ones wait for the first one's answer instead of charging again. The database's unique
//! order id is the backstop for charges from another process.
//!
//! The simulated processing time is a timer in the charge's own task, so a slow
//! payment never holds the mailbox or delays anyone else's order.
//!
//! An order paid by card charges as its card's token says (see [`cards`]): the
//! provider may decline with a reason, fail with a passing error, or charge and
//! lose its answer. A charge has a deadline: a provider that has not answered
//! within it is a passing error ([`ChargeError::Timeout`]), which the saga
//! retries; the provider is idempotent by order, so a retry after a lost answer
//! finds the charge that was made instead of making another.

mod cards;

use cards::Behaviour;
pub use cards::{test_cards, tokenize};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::sync::oneshot;

use super::mailbox::{Mailbox, Named, tracked_handlers};
use crate::domain::{
    Money, Order, OrderId, OrderStatus, OrderStep, Payment, PaymentId, PaymentStatus, SagaOutcome,
};
use crate::meters;
use crate::store::{Store, StoreError};

/// How the simulated provider behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaymentSettings {
    /// Share of charges declined, from 0.0 (none) to 1.0 (all).
    pub failure_rate: f64,
    /// Simulated processing time of each charge.
    pub latency: Duration,
    /// Makes decisions reproducible: the same seed declines the same orders.
    pub seed: Option<u64>,
    /// How long the provider may take beyond `latency` before a charge counts
    /// as failed (and is retried).
    pub deadline: Duration,
}

impl PaymentSettings {
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            failure_rate: 0.0,
            latency: Duration::ZERO,
            seed: None,
            deadline: Self::DEFAULT_DEADLINE,
        }
    }
}

impl PaymentSettings {
    fn declines(&self, order_id: OrderId) -> bool {
        let draw: f64 = match self.seed {
            Some(seed) => {
                let (high, low) = order_id.as_uuid().as_u64_pair();
                StdRng::seed_from_u64(seed ^ high ^ low.rotate_left(17)).random()
            }
            None => rand::random(),
        };
        draw < self.failure_rate
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChargeError {
    // In cents, as `total_amount` is given: `Money` displays as dollars.
    #[error("total_amount must equal the order's total of {cents} cents", cents = .expected.cents())]
    AmountMismatch { expected: Money },
    #[error("order {order_id} is {status} at step {step:?}: it cannot be charged now")]
    NotPayable {
        order_id: OrderId,
        status: OrderStatus,
        step: OrderStep,
    },
    #[error("the payment provider failed (a passing error): the charge may be tried again")]
    ProviderFailed,
    #[error("the payment provider did not answer within {0:?}: the charge may be tried again")]
    Timeout(Duration),
    #[error("payment storage failed")]
    Store(#[source] Arc<StoreError>),
    #[error("the payment actor did not answer")]
    Mailbox(#[from] MailboxError),
}

impl From<StoreError> for ChargeError {
    fn from(error: StoreError) -> Self {
        ChargeError::Store(Arc::new(error))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payment storage failed")]
    Store(#[from] StoreError),
}

/// Charge an order its total. Sent by the order saga and by `POST /api/payments`,
/// with the order as Orders knows it: whether it may be charged, and for how
/// much, is decided from that alone, so Payment never asks Orders.
#[derive(Debug, Message)]
#[rtype(result = "Result<Payment, ChargeError>")]
pub struct Charge {
    pub order: Order,
    pub amount: Money,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Payment>, PaymentError>")]
pub struct GetPayment(pub PaymentId);

/// The payments made for an order (at most one).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Payment>, PaymentError>")]
pub struct ListPayments {
    pub order_id: OrderId,
}

/// Sent by a charge's task to its actor when it has an answer.
#[derive(Message)]
#[rtype(result = "()")]
struct ChargeSettled {
    key: ChargeKey,
    result: Result<Payment, ChargeError>,
}

type Waiter = oneshot::Sender<Result<Payment, ChargeError>>;

/// Charges are joined only when they ask the same thing, so that a joined charge
/// gets exactly the answer it would have got alone (a wrong amount for an order
/// must not fail a right one). Charges of different amounts run side by side; at
/// most one amount is the order's total, so at most one of them can charge. The
/// order's step is part of the question: a client's charge made with the order
/// as it was before its stock was held (not payable) must not answer the saga's,
/// made at RESERVED.
type ChargeKey = (OrderId, Money, OrderStep);

pub struct PaymentActor {
    store: Store,
    settings: PaymentSettings,
    /// Charges under way, with whoever asked for the same charge meanwhile.
    in_flight: HashMap<ChargeKey, Vec<Waiter>>,
    /// The orders whose last charge failed for a passing reason, with how many
    /// attempts they made: the provider's memory of a card's first attempt.
    attempts: HashMap<OrderId, u32>,
}

impl PaymentActor {
    pub fn new(store: Store, settings: PaymentSettings) -> Self {
        PaymentActor {
            store,
            settings,
            in_flight: HashMap::new(),
            attempts: HashMap::new(),
        }
    }
}

impl Named for PaymentActor {
    const NAME: &'static str = "payment";
}
tracked_handlers!(PaymentActor: Charge, GetPayment, ListPayments, ChargeSettled);

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Charge> for PaymentActor {
    type Result = ResponseFuture<Result<Payment, ChargeError>>;

    fn handle(&mut self, msg: Charge, ctx: &mut Context<Self>) -> Self::Result {
        let key = (msg.order.order_id, msg.amount, msg.order.step);
        if let Some(waiters) = self.in_flight.get_mut(&key) {
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            return Box::pin(async move { rx.await.map_err(|_| MailboxError::Closed)? });
        }

        self.in_flight.insert(key, Vec::new());
        let attempt = self.attempts.get(&msg.order.order_id).map_or(1, |n| n + 1);
        let me = Mailbox::new(ctx.address());
        let store = self.store.clone();
        let settings = self.settings;
        Box::pin(async move {
            let result = charge(&store, settings, &msg.order, msg.amount, attempt).await;
            me.do_send(ChargeSettled {
                key,
                result: result.clone(),
            });
            result
        })
    }
}

impl Handler<ChargeSettled> for PaymentActor {
    type Result = ();

    fn handle(&mut self, msg: ChargeSettled, _: &mut Context<Self>) {
        let (order_id, ..) = msg.key;
        match &msg.result {
            Err(ChargeError::ProviderFailed | ChargeError::Timeout(_)) => {
                *self.attempts.entry(order_id).or_default() += 1;
            }
            _ => {
                self.attempts.remove(&order_id);
            }
        }
        for waiter in self.in_flight.remove(&msg.key).unwrap_or_default() {
            let _ = waiter.send(msg.result.clone());
        }
    }
}

async fn charge(
    store: &Store,
    settings: PaymentSettings,
    order: &Order,
    amount: Money,
    attempt: u32,
) -> Result<Payment, ChargeError> {
    let order_id = order.order_id;
    if order.total_amount != amount {
        return Err(ChargeError::AmountMismatch {
            expected: order.total_amount,
        });
    }
    // Only an order a payment moves on (its stock held) may be charged: charging
    // earlier could take money for an order then rejected for want of stock. An
    // order past that step may have been charged already: that payment answers.
    if order.step.next(SagaOutcome::Paid).is_none() {
        if let Some(existing) = store.payments_for_order(order_id).await?.into_iter().next() {
            return Ok(existing);
        }
        return Err(ChargeError::NotPayable {
            order_id,
            status: order.status(),
            step: order.step,
        });
    }

    // A payment recorded earlier for this order (a saga driven again after a
    // crash, or a retry after a lost answer) wins over this one:
    // `record_payment` answers it instead.
    let behaviour = (order.payment_method.as_ref()).map(|method| cards::behaviour(&method.token));
    let (status, reason) = match behaviour {
        Some(Behaviour::Declines(reason)) => (PaymentStatus::Declined, Some(reason.to_owned())),
        Some(_) => (PaymentStatus::Succeeded, None),
        None if settings.declines(order_id) => (PaymentStatus::Declined, None),
        None => (PaymentStatus::Succeeded, None),
    };
    let first_attempt = attempt == 1;
    // The provider's own time: its processing, or a passing failure. The
    // deadline bounds it, not the recording of its answer.
    let deadline = settings.latency + settings.deadline;
    let provider = async {
        if behaviour == Some(Behaviour::FailsOnce) && first_attempt {
            return Err(ChargeError::ProviderFailed);
        }
        if !settings.latency.is_zero() {
            actix_rt::time::sleep(settings.latency).await;
        }
        Ok(())
    };
    actix_rt::time::timeout(deadline, provider)
        .await
        .map_err(|_| ChargeError::Timeout(deadline))??;
    let payment_id = PaymentId::generate();
    let recorded = store
        .record_payment(Payment {
            payment_id,
            order_id,
            total_amount: amount,
            status,
            reason,
            created_at: Utc::now(),
        })
        .await?;
    // Counted only when this payment was the one recorded (not an earlier one).
    if recorded.payment_id == payment_id {
        metrics::counter!(meters::PAYMENTS, "status" => recorded.status.as_str()).increment(1);
    }
    if behaviour == Some(Behaviour::LosesAnswerOnce) && first_attempt {
        // Charged, but the answer never comes back: the caller's wait runs
        // out at the deadline.
        actix_rt::time::sleep(settings.deadline).await;
        return Err(ChargeError::Timeout(deadline));
    }
    tracing::info!(%order_id, payment_id = %recorded.payment_id, status = recorded.status.as_str(), attempt, "charged");
    Ok(recorded)
}

impl Handler<GetPayment> for PaymentActor {
    type Result = ResponseFuture<Result<Option<Payment>, PaymentError>>;

    fn handle(
        &mut self,
        GetPayment(payment_id): GetPayment,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.payment(payment_id).await?) })
    }
}

impl Handler<ListPayments> for PaymentActor {
    type Result = ResponseFuture<Result<Vec<Payment>, PaymentError>>;

    fn handle(&mut self, msg: ListPayments, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.payments_for_order(msg.order_id).await?) })
    }
}

#[cfg(test)]
mod tests;
