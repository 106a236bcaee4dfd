//! The Orders actor, messages in, state and replies out: every test opens its own
//! database, starts the actors over it, places orders and follows each saga to its
//! end by polling the order.

use std::time::Duration;

use futures_util::future::join_all;

use super::*;
use crate::actors::testing::*;
use crate::domain::{Money, OrderStatus, OrderStep, Payment, PaymentId, PaymentStatus};
use crate::store;

fn key(raw: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(raw).unwrap())
}

#[actix_rt::test]
async fn an_order_for_an_unknown_product_is_refused_and_stores_nothing() {
    let (_dir, store, actors) = shop(instant(0.0), 10).await;
    let coffee = ProductId::parse("coffee").unwrap();

    let refused = place(&actors, coffee.clone(), 1, key("k-1")).await;

    assert!(
        matches!(&refused, Err(OrderError::UnknownProduct { product_id, line: 0 }) if *product_id == coffee),
        "{refused:?}"
    );
    assert!(store.unfinished_orders().await.unwrap().is_empty());
    // The key was not taken: it places a new order now.
    let placed = place(&actors, tea(), 1, key("k-1")).await.unwrap();
    assert!(!placed.replayed);
    assert_eq!(placed.order.lines, [tea_line(1)]);
}

#[actix_rt::test]
async fn a_placed_order_is_pending_and_its_saga_confirms_it() {
    let (_dir, store, actors) = shop(instant(0.0), 10).await;

    let placed = place(&actors, tea(), 3, None).await.unwrap();

    assert!(!placed.replayed);
    assert_eq!(placed.order.status(), OrderStatus::Pending);
    assert_eq!(placed.order.step, OrderStep::Placed);
    assert_eq!(placed.order.lines, [tea_line(3)]);
    assert_eq!(placed.order.reason, None);

    let done = until_terminal(&actors.orders, placed.order.order_id).await;
    assert_eq!(done.status(), OrderStatus::Confirmed);
    assert_eq!(done.step, OrderStep::Confirmed);
    assert_eq!(done.reason, None);
    assert_stock(&actors.inventory, &store, "tea", 7).await;
    let payments = payments_for(&store, done.order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Succeeded);
    assert_eq!(payments[0].total_amount, done.total_amount);
}

#[actix_rt::test]
async fn a_declined_payment_fails_the_order_and_gives_the_stock_back() {
    let (_dir, store, actors) = shop(instant(1.0), 10).await;

    let placed = place(&actors, tea(), 3, None).await.unwrap();
    let done = until_terminal(&actors.orders, placed.order.order_id).await;

    assert_eq!(done.status(), OrderStatus::PaymentFailed);
    assert_eq!(done.step, OrderStep::PaymentFailed);
    assert_eq!(done.reason.as_deref(), Some("the payment was declined"));
    assert_stock(&actors.inventory, &store, "tea", 10).await;
    let payments = payments_for(&store, done.order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Declined);
}

#[actix_rt::test]
async fn ordering_more_than_the_stock_is_rejected_and_takes_nothing() {
    let (_dir, store, actors) = shop(instant(0.0), 5).await;

    let placed = place(&actors, tea(), 6, None).await.unwrap();
    assert_eq!(placed.order.status(), OrderStatus::Pending);
    let done = until_terminal(&actors.orders, placed.order.order_id).await;

    assert_eq!(done.status(), OrderStatus::Rejected);
    assert_eq!(
        done.reason.as_deref(),
        Some("not enough stock of tea: 6 requested, 5 available")
    );
    assert_stock(&actors.inventory, &store, "tea", 5).await;
    assert!(payments_for(&store, done.order_id).await.is_empty());
}

#[actix_rt::test]
async fn the_same_key_and_body_replay_the_first_order() {
    let (_dir, store, actors) = shop(instant(0.0), 10).await;

    let first = place(&actors, tea(), 2, key("retry-1")).await.unwrap();
    let again = place(&actors, tea(), 2, key("retry-1")).await.unwrap();

    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.order.order_id, first.order.order_id);
    until_terminal(&actors.orders, first.order.order_id).await;
    // Only one order took stock.
    assert_stock(&actors.inventory, &store, "tea", 8).await;
    // A replay after the saga ended shows where the order stands.
    let late = place(&actors, tea(), 2, key("retry-1")).await.unwrap();
    assert!(late.replayed);
    assert_eq!(late.order.order_id, first.order.order_id);
    assert_eq!(late.order.status(), OrderStatus::Confirmed);
}

#[actix_rt::test]
async fn concurrent_placements_with_one_key_make_one_order() {
    let (_dir, store, actors) = shop(instant(0.0), 10).await;

    let placed: Vec<Placed> = join_all((0..5).map(|_| place(&actors, tea(), 2, key("retry-c"))))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let order_id = placed[0].order.order_id;
    assert!(placed.iter().all(|p| p.order.order_id == order_id));
    assert_eq!(placed.iter().filter(|p| !p.replayed).count(), 1);
    until_terminal(&actors.orders, order_id).await;
    assert_stock(&actors.inventory, &store, "tea", 8).await;
}

#[actix_rt::test]
async fn the_same_key_with_another_body_is_refused() {
    let (_dir, store, actors) = shop(instant(0.0), 10).await;
    upsert(&actors.inventory, product("coffee", "Coffee", 500, 10)).await;
    let first = place(&actors, tea(), 2, key("retry-2")).await.unwrap();

    let other_quantity = place(&actors, tea(), 3, key("retry-2")).await;
    let other_product = place(
        &actors,
        ProductId::parse("coffee").unwrap(),
        2,
        key("retry-2"),
    )
    .await;

    assert!(
        matches!(other_quantity, Err(OrderError::IdempotencyKeyReused)),
        "{other_quantity:?}"
    );
    assert!(
        matches!(other_product, Err(OrderError::IdempotencyKeyReused)),
        "{other_product:?}"
    );
    until_terminal(&actors.orders, first.order.order_id).await;
    assert_eq!(stored_stock(&store, "tea").await, 8);
}

#[actix_rt::test]
async fn the_total_is_the_price_times_the_quantity() {
    let (_dir, _store, actors) = shop(instant(0.0), 1000).await;

    for quantity in [1, 3, 1000] {
        let placed = place(&actors, tea(), quantity, None).await.unwrap();
        assert_eq!(
            placed.order.total_amount,
            Money::from_cents(PRICE * quantity)
        );
        let done = until_terminal(&actors.orders, placed.order.order_id).await;
        assert_eq!(done.total_amount, Money::from_cents(PRICE * quantity));
    }
}

#[actix_rt::test]
async fn get_order_answers_none_for_an_unknown_order() {
    let (_dir, _store, actors) = shop(instant(0.0), 10).await;

    let found = actors
        .orders
        .send(GetOrder(OrderId::generate()))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(found, None);
}

#[actix_rt::test]
async fn many_orders_at_once_never_oversell() {
    let (_dir, store, actors) = shop(instant(0.0), 10).await;

    let placed = join_all((0..30).map(|_| place(&actors, tea(), 1, None))).await;
    let mut confirmed = 0;
    let mut rejected = 0;
    for placed in placed {
        let done = until_terminal(&actors.orders, placed.unwrap().order.order_id).await;
        match done.status() {
            OrderStatus::Confirmed => confirmed += 1,
            OrderStatus::Rejected => rejected += 1,
            other => panic!("unexpected status {other}"),
        }
    }

    assert_eq!((confirmed, rejected), (10, 20));
    assert_stock(&actors.inventory, &store, "tea", 0).await;
}

#[actix_rt::test]
async fn resume_unfinished_drives_an_order_the_actor_never_saw() {
    let (_dir, store, actors) = shop(instant(0.0), 10).await;
    let order = order_in_store(&store, 4).await;

    let resumed = actors.orders.send(ResumeUnfinished).await.unwrap().unwrap();

    assert_eq!(resumed, 1);
    let done = until_terminal(&actors.orders, order.order_id).await;
    assert_eq!(done.status(), OrderStatus::Confirmed);
    assert_stock(&actors.inventory, &store, "tea", 6).await;
    assert!(store.unfinished_orders().await.unwrap().is_empty());
}

#[actix_rt::test]
async fn a_resumed_saga_keeps_the_payment_already_made() {
    // A crash after the charge was recorded: stock held, order at RESERVED, a
    // declined payment on file. Payments would now succeed, but the order has
    // been charged once and must end as that charge decided.
    let (_dir, store, actors) = shop(instant(0.0), 10).await;
    let order = order_in_store(&store, 4).await;
    reserved_in_store(&store, &order).await;
    assert!(moved_in_store(&store, order.order_id, OrderStep::Reserved).await);
    let declined = store
        .record_payment(Payment {
            payment_id: PaymentId::generate(),
            order_id: order.order_id,
            total_amount: order.total_amount,
            status: PaymentStatus::Declined,
            reason: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(stored_stock(&store, "tea").await, 6);

    let resumed = actors.orders.send(ResumeUnfinished).await.unwrap().unwrap();

    assert_eq!(resumed, 1);
    let done = until_terminal(&actors.orders, order.order_id).await;
    assert_eq!(done.status(), OrderStatus::PaymentFailed);
    assert_stock(&actors.inventory, &store, "tea", 10).await;
    assert_eq!(payments_for(&store, order.order_id).await, [declined]);
}

#[actix_rt::test]
async fn resume_unfinished_leaves_finished_orders_alone() {
    let (_dir, _store, actors) = shop(instant(0.0), 10).await;
    let placed = place(&actors, tea(), 1, None).await.unwrap();
    until_terminal(&actors.orders, placed.order.order_id).await;

    let resumed = actors.orders.send(ResumeUnfinished).await.unwrap().unwrap();

    assert_eq!(resumed, 0);
}

#[actix_rt::test]
async fn an_order_moves_only_along_the_arrows_of_its_saga() {
    let (_dir, store, _actors) = shop(instant(0.0), 10).await;
    let order = order_in_store(&store, 1).await;

    for skipped in [
        OrderStep::Confirmed,
        OrderStep::PaymentFailed,
        OrderStep::Placed,
    ] {
        assert!(
            !moved_in_store(&store, order.order_id, skipped).await,
            "{skipped:?}"
        );
    }
    assert!(moved_in_store(&store, order.order_id, OrderStep::Reserved).await);
    // A run of the saga that found no stock before this one reserved it comes
    // too late: the order is no longer PLACED.
    assert!(!moved_in_store(&store, order.order_id, OrderStep::Rejected).await);
    assert!(!moved_in_store(&store, order.order_id, OrderStep::Reserved).await);
    let now = store.order(order.order_id).await.unwrap().unwrap();
    assert_eq!(now.step, OrderStep::Reserved);
    assert!(moved_in_store(&store, order.order_id, OrderStep::Confirmed).await);
    assert!(!moved_in_store(&store, order.order_id, OrderStep::PaymentFailed).await);
    let now = store.order(order.order_id).await.unwrap().unwrap();
    assert_eq!(now.step, OrderStep::Confirmed);
    let events = store.order_events(order.order_id, 0).await.unwrap();
    let steps: Vec<_> = events.iter().map(|event| event.step).collect();
    assert_eq!(
        steps,
        [OrderStep::Placed, OrderStep::Reserved, OrderStep::Confirmed]
    );
}

#[actix_rt::test]
async fn a_late_run_of_a_saga_agrees_with_the_first_even_when_stock_came_back() {
    // Two runs of one order's saga (an instance took over a saga that seemed
    // stalled but was not): the first found too little stock and rejected the
    // order. Then stock came back, and the second, which saw the order PLACED,
    // asks for stock only now.
    let (_dir, store, actors) = shop(instant(0.0), 2).await;
    let order = order_in_store(&store, 4).await;
    let first_run = reserved_in_store(&store, &order).await;
    assert!(matches!(
        first_run,
        store::ReserveOutcome::Insufficient { .. }
    ));
    assert!(moved_in_store(&store, order.order_id, OrderStep::Rejected).await);
    restock(&actors, 10).await;

    let (events, _) = broadcast::channel(16);
    let late = Saga::new(
        store.clone(),
        actors.inventory.addr.clone(),
        actors.payment.clone(),
        events,
        OrderBook::default(),
        SagaSettings::default(),
    );
    actix_rt::time::timeout(Duration::from_secs(5), late.run(order.clone(), None))
        .await
        .expect("the late run ends");

    let done = store.order(order.order_id).await.unwrap().unwrap();
    assert_eq!(done.step, OrderStep::Rejected);
    assert_stock(&actors.inventory, &store, "tea", 10).await;
    assert!(payments_for(&store, order.order_id).await.is_empty());
}

#[actix_rt::test]
async fn an_order_stored_slowly_while_others_are_refused_halves_the_bound() {
    use crate::actors::admission::AdmissionSettings;
    let (_dir, _store, actors) = shop(instant(0.0), 1_000).await;
    let actors = actors.with_admission(AdmissionSettings {
        max_in_flight: 1_000,
        ..AdmissionSettings::default()
    });
    let admission = actors.admission.clone();
    assert_eq!(admission.limit(), 1_000);
    // Full: the next order is refused, which the bound's window notes.
    let mut held: Vec<_> = std::iter::from_fn(|| admission.admit().ok()).collect();
    assert_eq!(held.len(), 1_000);
    held.pop();
    let admitted = admission.admit().unwrap();
    // It takes longer than the target (and than a window) to be stored.
    tokio::time::sleep(AdmissionSettings::WINDOW + AdmissionSettings::TARGET).await;
    let order = one_line(tea(), 1, None, Some(admitted));
    actors.orders.send(order).await.unwrap().unwrap();
    assert_eq!(admission.limit(), 500);
}
