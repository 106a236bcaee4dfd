//! Paying with a card: the simulated provider's test cards behave as the
//! README's table says, and the card's number and CVC are used for the charge
//! alone: never stored, logged or echoed.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use support::{TestApp, on_each_backend, put_product_at, spawn_app, spawn_app_with};

use crate::logs::{decided, real_binary};
use crate::pages::browser;

/// An order of `items` paid with the card `number`, valid until (`month`, `year`).
fn paid_by_card(items: Value, number: &str, (month, year): (u32, u32), cvc: &str) -> Value {
    let card = json!({"card_number": number, "exp_month": month, "exp_year": year, "cvc": cvc});
    json!({"items": items, "payment": card})
}

fn paid_with(number: &str) -> Value {
    let items =
        json!([{"product_id": "mug", "quantity": 2}, {"product_id": "beans", "quantity": 1}]);
    paid_by_card(items, number, (12, 2031), "123")
}

/// A card number as it is printed: four groups of four digits.
fn spaced(number: &str) -> String {
    let groups: Vec<&str> = (0..4).map(|i| &number[i * 4..i * 4 + 4]).collect();
    groups.join(" ")
}

async fn stocked(app: &TestApp) {
    app.stock_product("mug", 1450, 10).await;
    app.stock_product("beans", 2490, 5).await;
}

/// Places the order paid with `number` and follows it to its outcome.
async fn outcome_with(app: &TestApp, number: &str) -> (Value, Vec<Value>) {
    let (order_id, order) = app.decided(&paid_with(number)).await;
    let payments = app.payments_of(&order_id).await;
    (order, payments)
}

/// The order is confirmed, and paid by one charge that succeeded.
fn assert_paid_once(order: &Value, payments: &[Value]) {
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["status"], "SUCCEEDED");
}

#[on_each_backend]
async fn a_good_card_pays_and_the_order_shows_its_brand_and_last_four_digits() {
    let app = spawn_app().await;
    stocked(&app).await;

    let (order, payments) = outcome_with(&app, "4242 4242 4242 4242").await;

    assert_paid_once(&order, &payments);
    assert_eq!(
        order["payment_method"],
        json!({"brand": "visa", "last4": "4242"})
    );
    assert_eq!(payments[0]["total_amount"], 2 * 1450 + 2490);
    // Any other valid number pays too, whatever the failure rate says.
    let app = spawn_app_with(|config| config.payment_failure_rate = 1.0).await;
    stocked(&app).await;
    let (order, _) = outcome_with(&app, "5555555555554444").await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(order["payment_method"]["brand"], "mastercard");
}

#[on_each_backend]
async fn declined_cards_fail_the_order_with_the_providers_reason_and_give_every_line_back() {
    let app = spawn_app().await;
    stocked(&app).await;

    for (number, reason) in [
        ("4000 0000 0000 0002", "card declined"),
        ("4000 0000 0000 9995", "insufficient funds"),
    ] {
        let (order, payments) = outcome_with(&app, number).await;

        assert_eq!(order["status"], "PAYMENT_FAILED", "{order}");
        assert_eq!(
            order["reason"],
            format!("the payment was declined: {reason}")
        );
        assert_eq!(payments.len(), 1, "{number}");
        assert_eq!(payments[0]["status"], "DECLINED");
        assert_eq!(payments[0]["reason"], reason);
        assert_eq!(app.stock_of("mug").await, 10);
        assert_eq!(app.stock_of("beans").await, 5);
    }
}

#[on_each_backend]
async fn a_provider_error_is_retried_and_the_order_is_paid_once() {
    let app = spawn_app().await;
    stocked(&app).await;

    let (order, payments) = outcome_with(&app, "4000 0000 0000 0119").await;

    assert_paid_once(&order, &payments);
    assert_eq!(app.stock_of("mug").await, 8);
}

#[on_each_backend]
async fn a_charge_whose_answer_is_lost_is_found_and_the_order_is_paid_once() {
    // A short deadline, so that the lost answer is given up on quickly.
    let app = spawn_app_with(|config| config.payment_deadline_ms = 300).await;
    stocked(&app).await;
    let started = Instant::now();

    let (order, payments) = outcome_with(&app, "4000 0000 0000 1976").await;

    assert_paid_once(&order, &payments);
    assert_eq!(app.stock_of("beans").await, 4);
    // The saga waited out the deadline before it asked again.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[on_each_backend]
async fn the_same_key_with_another_card_is_another_order_and_is_refused() {
    let app = spawn_app().await;
    stocked(&app).await;
    let post = |body: Value| {
        (app.client.post(app.url("/api/orders")))
            .header("Idempotency-Key", "card-key-1")
            .json(&body)
            .send()
    };

    let first = post(paid_with("4242 4242 4242 4242")).await.expect("POST");
    let again = post(paid_with("4242 4242 4242 4242")).await.expect("POST");
    let other = post(paid_with("5555 5555 5555 4444")).await.expect("POST");

    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The real binary, logging at debug level to a file, over a SQLite file: after
/// orders paid with every test card (and refusals of bad cards), neither the
/// log nor any of the database's files holds a card number or a CVC.
#[actix_web::test]
async fn card_numbers_and_cvcs_are_neither_stored_nor_logged() {
    let (mut app, base, client) = real_binary(
        None,
        &[
            ("MINIMART_PAYMENT_LATENCY_MS", "0"),
            ("MINIMART_PAYMENT_DEADLINE_MS", "200"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    put_product_at(&client, &base, "mug", "Mug", 1450, 100).await;
    put_product_at(&client, &base, "beans", "Beans", 2490, 100).await;

    let numbers = [
        "4242424242424242",
        "4000000000000002",
        "4000000000009995",
        "4000000000000119",
        "4000000000001976",
        "5555555555554444",
    ];
    let cvc = "7391";
    for number in numbers {
        let mug = json!([{"product_id": "mug", "quantity": 1}]);
        let body = paid_by_card(mug, &spaced(number), (12, 2031), cvc);
        let placed = client.post(format!("{base}/api/orders")).json(&body);
        let (_, order) = decided(&client, &base, placed).await;
        assert!(order.to_string().contains(&number[12..]), "{order}");
        // Refused cards: an expired one, and one with a wrong check digit.
        for (month, year, number) in [
            (1, 2020, number.to_owned()),
            (12, 2031, format!("{}1", &number[..15])),
        ] {
            let beans = json!([{"product_id": "beans", "quantity": 1}]);
            let body = paid_by_card(beans, &number, (month, year), cvc);
            let refused = (client.post(format!("{base}/api/orders")).json(&body).send())
                .await
                .expect("POST");
            assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        }
    }

    // And the storefront's checkout, refused once, then placed.
    let shopper = browser();
    let added = (shopper.post(format!("{base}/cart")))
        .form(&[("product_id", "mug"), ("quantity", "1")])
        .send()
        .await
        .expect("POST");
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    for (number, expected) in [
        ("4000 0000 0000 9994", StatusCode::UNPROCESSABLE_ENTITY),
        ("4000 0000 0000 9995", StatusCode::SEE_OTHER),
    ] {
        let form = [
            ("card_number", number),
            ("exp_month", "12"),
            ("exp_year", "2031"),
            ("cvc", cvc),
            ("idempotency_key", "checkout-1"),
            ("cart", "mug:1"),
        ];
        let answer = (shopper.post(format!("{base}/checkout")).form(&form).send())
            .await
            .expect("POST");
        assert_eq!(answer.status(), expected, "{number}");
        let page = answer.text().await.expect("a body");
        assert!(!page.contains(number) && !page.contains(cvc), "{number}");
    }

    assert!(app.stop(), "the app stops cleanly");

    let log = app.log().into_bytes();
    assert!(
        String::from_utf8_lossy(&log).contains("DEBUG"),
        "the log is at debug level"
    );
    let mut files = vec![("the log".to_owned(), log)];
    for entry in std::fs::read_dir(app.folder()).expect("the app's folder") {
        let path = entry.expect("an entry").path();
        if path.to_string_lossy().contains("shop.db") {
            files.push((
                path.display().to_string(),
                std::fs::read(&path).expect("a file"),
            ));
        }
    }
    assert!(files.len() >= 2, "the database's files were found");
    for (name, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        // The storefront's refused number too.
        for number in numbers.iter().copied().chain(["4000000000009994"]) {
            assert!(!text.contains(number), "{name} holds {number}");
            assert!(!text.contains(&spaced(number)), "{name} holds {number}");
            // Nor the first twelve digits, which no last four can stand for.
            assert!(
                !text.contains(&number[..12]),
                "{name} holds {number}'s digits"
            );
        }
        // The CVC as a number of its own (digits run on in timestamps).
        let runs = text.split(|c: char| !c.is_ascii_digit());
        assert!(
            !runs.into_iter().any(|run| run == cvc),
            "{name} holds the CVC"
        );
    }
}
