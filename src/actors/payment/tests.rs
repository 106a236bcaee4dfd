//! The Payment actor, messages in, state and replies out: every test opens its own
//! database and starts the actors over it. Orders that must wait at step RESERVED
//! without a payment are written straight into the store, so that no saga charges
//! them first.

use futures_util::future::join_all;

use super::*;
use crate::actors::Actors;
use crate::actors::testing::*;
use crate::domain::Order;
use crate::store;

/// Places an order through the Orders actor and waits for its saga to finish.
async fn charged_order(actors: &Actors, units: i64) -> Order {
    let placed = place(actors, tea(), units, None).await.unwrap();
    until_terminal(&actors.orders, placed.order.order_id).await
}

/// An order at step RESERVED, its stock held and no payment made: what a saga
/// leaves just before it charges.
async fn reserved_order(store: &Store, units: i64) -> Order {
    let order = order_in_store(store, units).await;
    let reserved = reserved_in_store(store, &order).await;
    assert!(matches!(reserved, store::ReserveOutcome::Reserved(_)));
    assert!(moved_in_store(store, order.order_id, OrderStep::Reserved).await);
    let order = store.order(order.order_id).await.unwrap().unwrap();
    assert_eq!(order.step, OrderStep::Reserved);
    order
}

/// Payments that succeed after 50 ms, so that charges sent together overlap.
fn slow_payments() -> PaymentSettings {
    PaymentSettings {
        latency: Duration::from_millis(50),
        ..instant(0.0)
    }
}

/// A charge of `cents` for the order as the caller sees it.
fn charge_of(order: &Order, cents: i64) -> Charge {
    Charge {
        order: order.clone(),
        amount: Money::from_cents(cents),
    }
}

/// Queues both charges before either is handled, and waits for both answers.
async fn overlapping(
    actors: &Actors,
    first: Charge,
    second: Charge,
) -> (Result<Payment, ChargeError>, Result<Payment, ChargeError>) {
    let first = actors.payment.send(first);
    let second = actors.payment.send(second);
    let (first, second) = futures_util::future::join(first, second).await;
    (first.unwrap(), second.unwrap())
}

/// Charges the order as Orders knows it now, as the saga and the API do.
async fn charge(actors: &Actors, order_id: OrderId, cents: i64) -> Result<Payment, ChargeError> {
    let order = actors
        .order(order_id)
        .await
        .unwrap()
        .expect("a known order");
    actors.payment.send(charge_of(&order, cents)).await.unwrap()
}

/// The order's payments, as the Payment actor lists them.
async fn listed_payments(actors: &Actors, order_id: OrderId) -> Vec<Payment> {
    let list = actors.payment.send(ListPayments { order_id });
    list.await.unwrap().unwrap()
}

/// The payment, as the Payment actor finds it by its id.
async fn payment_by_id(actors: &Actors, payment_id: PaymentId) -> Option<Payment> {
    actors
        .payment
        .send(GetPayment(payment_id))
        .await
        .unwrap()
        .unwrap()
}

#[actix_rt::test]
async fn a_second_charge_returns_the_first_payment() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    let order = charged_order(&actors, 2).await;
    assert_eq!(order.status(), OrderStatus::Confirmed);
    let first = payments_for(&store, order.order_id).await;
    assert_eq!(first.len(), 1);

    let again = charge(&actors, order.order_id, 700).await.unwrap();

    assert_eq!(again, first[0]);
    assert_eq!(again.status, PaymentStatus::Succeeded);
    assert_eq!(payments_for(&store, order.order_id).await, first);
}

#[actix_rt::test]
async fn a_second_charge_of_a_declined_order_returns_the_decline() {
    let (_dir, store, actors) = shop(instant(1.0), 100).await;
    let order = charged_order(&actors, 1).await;
    assert_eq!(order.status(), OrderStatus::PaymentFailed);

    let again = charge(&actors, order.order_id, PRICE).await.unwrap();

    assert_eq!(again.status, PaymentStatus::Declined);
    assert_eq!(payments_for(&store, order.order_id).await, [again]);
}

#[actix_rt::test]
async fn a_charge_for_the_wrong_amount_is_refused() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    let charged = charged_order(&actors, 2).await;
    let waiting = reserved_order(&store, 3).await;

    let against_payment = charge(&actors, charged.order_id, 699).await;
    let against_order = charge(&actors, waiting.order_id, 1051).await;

    assert!(
        matches!(against_payment, Err(ChargeError::AmountMismatch { expected }) if expected == Money::from_cents(700)),
        "{against_payment:?}"
    );
    assert!(
        matches!(against_order, Err(ChargeError::AmountMismatch { expected }) if expected == Money::from_cents(1050)),
        "{against_order:?}"
    );
    assert!(payments_for(&store, waiting.order_id).await.is_empty());
}

#[actix_rt::test]
async fn an_order_whose_stock_is_not_held_cannot_be_charged() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    let order = order_in_store(&store, 1).await;

    let reply = charge(&actors, order.order_id, PRICE).await;

    assert!(
        matches!(
            reply,
            Err(ChargeError::NotPayable {
                order_id,
                status: OrderStatus::Pending,
                step: OrderStep::Placed,
            }) if order_id == order.order_id
        ),
        "{reply:?}"
    );
    assert!(payments_for(&store, order.order_id).await.is_empty());
}

#[actix_rt::test]
async fn failure_rate_one_declines_every_charge() {
    let (_dir, store, actors) = shop(instant(1.0), 100).await;
    for _ in 0..5 {
        let order = reserved_order(&store, 1).await;

        let payment = charge(&actors, order.order_id, PRICE).await.unwrap();

        assert_eq!(payment.status, PaymentStatus::Declined);
        assert_eq!(payment.order_id, order.order_id);
        assert_eq!(payment.total_amount, Money::from_cents(PRICE));
    }
}

#[actix_rt::test]
async fn failure_rate_zero_accepts_every_charge() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    for _ in 0..5 {
        let order = reserved_order(&store, 2).await;

        let payment = charge(&actors, order.order_id, 700).await.unwrap();

        assert_eq!(payment.status, PaymentStatus::Succeeded);
        assert_eq!(payment.order_id, order.order_id);
        assert_eq!(payment.total_amount, Money::from_cents(700));
        assert_eq!(
            store.payment(payment.payment_id).await.unwrap(),
            Some(payment)
        );
    }
}

#[test]
fn seeded_decisions_are_reproducible_and_follow_the_rate() {
    let settings = PaymentSettings {
        failure_rate: 0.3,
        latency: Duration::ZERO,
        seed: Some(42),
        deadline: PaymentSettings::DEFAULT_DEADLINE,
    };
    let same_seed = PaymentSettings {
        failure_rate: 0.3,
        latency: Duration::from_millis(5),
        seed: Some(42),
        deadline: PaymentSettings::DEFAULT_DEADLINE,
    };
    let other_seed = PaymentSettings {
        seed: Some(43),
        ..settings
    };
    let order_ids: Vec<OrderId> = (0..1000).map(|_| OrderId::generate()).collect();

    let decisions: Vec<bool> = order_ids.iter().map(|id| settings.declines(*id)).collect();

    let declined = decisions.iter().filter(|d| **d).count();
    assert!(
        (200..=400).contains(&declined),
        "{declined} of 1000 declined"
    );
    for (order_id, decided) in order_ids.iter().zip(&decisions) {
        assert_eq!(settings.declines(*order_id), *decided);
        assert_eq!(same_seed.declines(*order_id), *decided);
    }
    let differ = order_ids
        .iter()
        .zip(&decisions)
        .filter(|(order_id, decided)| other_seed.declines(**order_id) != **decided)
        .count();
    assert!(differ > 0, "another seed should decide differently");
}

#[test]
fn the_rate_bounds_hold_with_and_without_a_seed() {
    for seed in [None, Some(7)] {
        let never = PaymentSettings {
            failure_rate: 0.0,
            latency: Duration::ZERO,
            seed,
            deadline: PaymentSettings::DEFAULT_DEADLINE,
        };
        let always = PaymentSettings {
            failure_rate: 1.0,
            ..never
        };
        for _ in 0..200 {
            let order_id = OrderId::generate();
            assert!(!never.declines(order_id), "seed {seed:?}");
            assert!(always.declines(order_id), "seed {seed:?}");
        }
    }
}

#[actix_rt::test]
async fn concurrent_charges_for_one_order_make_one_payment() {
    let (_dir, store, actors) = shop(slow_payments(), 100).await;
    let order = reserved_order(&store, 2).await;

    let replies = join_all((0..10).map(|_| actors.payment.send(charge_of(&order, 700)))).await;

    let payments: Vec<Payment> = replies
        .into_iter()
        .map(|reply| reply.unwrap().unwrap())
        .collect();
    let stored = payments_for(&store, order.order_id).await;
    assert_eq!(stored.len(), 1);
    for payment in &payments {
        assert_eq!(payment.payment_id, stored[0].payment_id);
    }
}

#[actix_rt::test]
async fn a_charge_made_with_the_order_before_its_stock_was_held_does_not_answer_the_sagas() {
    let (_dir, store, actors) = shop(slow_payments(), 100).await;
    let order = reserved_order(&store, 2).await;
    // A client read the order while it was still PLACED, and charges with that.
    let stale = Order {
        step: OrderStep::Placed,
        ..order.clone()
    };

    // Both are queued before either is handled, for the same order and amount.
    let (client, saga) = overlapping(&actors, charge_of(&stale, 700), charge_of(&order, 700)).await;

    assert!(
        matches!(client, Err(ChargeError::NotPayable { .. })),
        "not payable as the client saw it"
    );
    assert_eq!(saga.unwrap().status, PaymentStatus::Succeeded);
}

#[actix_rt::test]
async fn a_joined_charge_for_the_wrong_amount_is_refused_alone() {
    let (_dir, store, actors) = shop(slow_payments(), 100).await;
    let order = reserved_order(&store, 2).await;

    // Both are queued before either is handled: the second joins the first.
    let (right, wrong) = overlapping(&actors, charge_of(&order, 700), charge_of(&order, 1)).await;

    assert_eq!(right.unwrap().status, PaymentStatus::Succeeded);
    assert!(
        matches!(wrong, Err(ChargeError::AmountMismatch { expected }) if expected == Money::from_cents(700))
    );
    assert_eq!(payments_for(&store, order.order_id).await.len(), 1);
}

/// A charge with the right amount that overlaps one with a wrong amount gets its
/// own answer, not the other charge's `AmountMismatch`.
#[actix_rt::test]
async fn a_joined_charge_for_the_right_amount_is_not_refused_for_another_charges_amount() {
    let (_dir, store, actors) = shop(instant(0.0), 100).await;
    let order = reserved_order(&store, 2).await;

    // Both are queued before either is handled: the second joins the first.
    let (wrong, right) = overlapping(&actors, charge_of(&order, 1), charge_of(&order, 700)).await;

    assert!(matches!(wrong, Err(ChargeError::AmountMismatch { .. })));
    assert!(
        matches!(&right, Ok(payment) if payment.status == PaymentStatus::Succeeded),
        "the charge for the right amount got {right:?}"
    );
}

#[actix_rt::test]
async fn payments_can_be_looked_up_by_id_and_by_order() {
    let (_dir, _store, actors) = shop(instant(0.0), 100).await;
    let order = charged_order(&actors, 1).await;

    let listed = listed_payments(&actors, order.order_id).await;
    assert_eq!(listed.len(), 1);
    let found = payment_by_id(&actors, listed[0].payment_id).await;
    assert_eq!(found.as_ref(), Some(&listed[0]));

    let missing = payment_by_id(&actors, PaymentId::generate()).await;
    assert_eq!(missing, None);
    let none = listed_payments(&actors, OrderId::generate()).await;
    assert!(none.is_empty());
}
