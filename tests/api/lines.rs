//! Orders of several lines: every line's stock is held, or none; the names and
//! prices are the ones the shopper saw when placing the order; and refusals
//! name the field at fault before anything is stored.

use std::collections::HashMap;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use support::{TestApp, assert_problem, on_each_backend, spawn_app, spawn_app_with};

/// What `stocked_shop` sells: mugs at $14.50 (10), filters at $6.90 (20), beans at $24.90 (5).
const STOCK: [(&str, i64, i64); 3] = [("mug", 1450, 10), ("filters", 690, 20), ("beans", 2490, 5)];

async fn stocked_shop(app: TestApp) -> TestApp {
    for (id, price, stock) in STOCK {
        app.stock_product(id, price, stock).await;
    }
    app
}

/// Each product's stock is as `stocked_shop` left it: nothing is held or sold.
async fn assert_stock_untouched(app: &TestApp) {
    for (id, _, stock) in STOCK {
        assert_eq!(app.stock_of(id).await, stock, "{id}");
    }
}

fn items(lines: &[(&str, i64)]) -> Value {
    let items: Vec<Value> = (lines.iter())
        .map(|(id, quantity)| json!({"product_id": id, "quantity": quantity}))
        .collect();
    json!({ "items": items })
}

#[on_each_backend]
async fn an_order_of_several_lines_is_confirmed_with_every_line_and_their_total() {
    let app = stocked_shop(spawn_app().await).await;

    let body = items(&[("mug", 2), ("filters", 3), ("beans", 1)]);
    let (order_id, order) = app.decided(&body).await;

    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(
        order["items"],
        json!([
            {"product_id": "mug", "product_name": "Product mug", "quantity": 2, "unit_price": 1450, "line_total": 2900},
            {"product_id": "filters", "product_name": "Product filters", "quantity": 3, "unit_price": 690, "line_total": 2070},
            {"product_id": "beans", "product_name": "Product beans", "quantity": 1, "unit_price": 2490, "line_total": 2490},
        ])
    );
    assert_eq!(order["total_amount"], 2900 + 2070 + 2490);
    // The seed's one-product fields belong to orders of one line.
    assert!(order.get("product_id").is_none(), "{order}");
    assert!(order.get("quantity").is_none(), "{order}");
    assert!(order.get("payment_method").is_none(), "{order}");
    assert_eq!(app.stock_of("mug").await, 8);
    assert_eq!(app.stock_of("filters").await, 17);
    assert_eq!(app.stock_of("beans").await, 4);
    let payments = app.payments_of(&order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["total_amount"], 7460);
}

#[on_each_backend]
async fn the_first_apis_fields_are_read_only_without_items() {
    let app = stocked_shop(spawn_app().await).await;

    let body = json!({"items": [{"product_id": "mug", "quantity": 1}], "product_id": "beans", "quantity": 2});
    let (_, order) = app.decided(&body).await;

    assert_eq!(order["items"].as_array().map(Vec::len), Some(1), "{order}");
    assert_eq!(order["product_id"], "mug");
    assert_eq!(app.stock_of("beans").await, 5);
}

#[on_each_backend]
async fn one_line_short_of_stock_rejects_the_order_and_holds_nothing_of_any_line() {
    let app = stocked_shop(spawn_app().await).await;

    let body = items(&[("mug", 2), ("beans", 6), ("filters", 1)]);
    let (order_id, order) = app.decided(&body).await;

    assert_eq!(order["status"], "REJECTED", "{order}");
    assert_eq!(
        order["reason"],
        "not enough stock of beans: 6 requested, 5 available"
    );
    assert_stock_untouched(&app).await;
    assert!(app.payments_of(&order_id).await.is_empty());
}

#[on_each_backend]
async fn a_declined_payment_gives_every_line_back() {
    let app = spawn_app_with(|config| config.payment_failure_rate = 1.0).await;
    let app = stocked_shop(app).await;

    let (_, order) = app.decided(&items(&[("mug", 4), ("beans", 5)])).await;

    assert_eq!(order["status"], "PAYMENT_FAILED", "{order}");
    assert_stock_untouched(&app).await;
}

#[on_each_backend]
async fn a_placed_order_keeps_the_names_and_prices_it_was_placed_with() {
    let app = stocked_shop(spawn_app().await).await;
    let (order_id, before) = app.decided(&items(&[("mug", 1), ("filters", 2)])).await;

    let renamed = app.put_product("mug", "Big mug", 9900, 3).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let after = app.get_json(&format!("/api/orders/{order_id}")).await;

    assert_eq!(after["items"], before["items"]);
    assert_eq!(after["items"][0]["product_name"], "Product mug");
    assert_eq!(after["items"][0]["unit_price"], 1450);
    assert_eq!(after["total_amount"], 1450 + 2 * 690);
}

#[on_each_backend]
async fn a_refused_order_names_the_field_at_fault_and_stores_nothing() {
    let app = stocked_shop(spawn_app().await).await;
    let card = |number: &str, month: i64, year: i64, cvc: Value| json!({"card_number": number, "exp_month": month, "exp_year": year, "cvc": cvc});
    let good = |payment: Value| json!({"items": [{"product_id": "mug", "quantity": 1}], "payment": payment});
    let too_many: Vec<Value> = (0..51)
        .map(|i| json!({"product_id": format!("p{i}"), "quantity": 1}))
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"items": []}), "items"),
        (json!({"items": too_many}), "items"),
        (items(&[("mug", 1), ("filters", 0)]), "items[1].quantity"),
        (items(&[("mug", 1), ("filters", 1001)]), "items[1].quantity"),
        (
            json!({"items": [{"product_id": "mug"}]}),
            "items[0].quantity",
        ),
        (
            json!({"items": [{"product_id": "no such thing!", "quantity": 1}]}),
            "items[0].product_id",
        ),
        (items(&[("mug", 1), ("filters", 1), ("mug", 2)]), "items"),
        (items(&[("mug", 1), ("teapot", 1)]), "items[1].product_id"),
        (json!({}), "items"),
        (
            good(json!({"card_number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2031})),
            "payment.cvc",
        ),
        (
            good(card("4242 4242 4242 4241", 12, 2031, json!("123"))),
            "payment.card_number",
        ),
        (
            good(card("4242", 12, 2031, json!("123"))),
            "payment.card_number",
        ),
        (
            good(card("4242 4242 4242 4242", 13, 2031, json!("123"))),
            "payment.exp_month",
        ),
        (
            good(card("4242 4242 4242 4242", 1, 2020, json!("123"))),
            "payment.exp_year",
        ),
        (
            good(card("4242 4242 4242 4242", 12, 2031, json!("12"))),
            "payment.cvc",
        ),
        (
            good(card("4242 4242 4242 4242", 12, 2031, json!(123))),
            "payment.cvc",
        ),
        (
            good(
                json!({"card_number": 4242424242424242_u64, "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            ),
            "payment.card_number",
        ),
    ];
    for (body, field) in cases {
        let response = app.post_order(&body).await;
        let context = format!("{body}");
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, &context).await;
        assert_eq!(problem["field"], field, "{context}: {problem}");
        // A refusal never echoes the card it was given.
        let text = problem.to_string();
        assert!(
            !text.contains("4242 4242") && !text.contains("42424242"),
            "{text}"
        );
    }

    assert_stock_untouched(&app).await;
    // A refused order keeps no key: the key places the next order as new.
    let keyed = |body: &Value| {
        (app.client.post(app.url("/api/orders")))
            .header("Idempotency-Key", "refused-then-good")
            .json(body)
            .send()
    };
    let refused = keyed(&items(&[("mug", 1), ("teapot", 1)]))
        .await
        .expect("POST");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let accepted = keyed(&items(&[("mug", 1)])).await.expect("POST");
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert!(accepted.headers().get("idempotent-replayed").is_none());
}

/// Shoppers buy overlapping sets of the same few hot products, listing them in
/// every order: no order waits on another's locks for ever, and no unit is sold
/// twice.
#[on_each_backend]
async fn orders_for_overlapping_hot_products_in_any_line_order_never_deadlock_or_oversell() {
    let app = spawn_app_with(|config| {
        config.payment_failure_rate = 0.2;
        config.payment_seed = Some(11);
    })
    .await;
    overlapping_hot_orders(&[&app]).await;
}

/// 180 orders of two or three of three hot products, in every order of lines,
/// placed at once and spread over `instances` (which share one database); then
/// every order is decided, its lines add up, and each product's stock is
/// conserved: seeded = left + the confirmed lines that bought it.
pub(crate) async fn overlapping_hot_orders(instances: &[&TestApp]) {
    let app = instances[0];
    let initial: HashMap<&str, i64> = [("hot-a", 30), ("hot-b", 20), ("hot-c", 12)].into();
    for (&id, &stock) in &initial {
        app.stock_product(id, 300, stock).await;
    }
    let sets: [&[&str]; 6] = [
        &["hot-a", "hot-b", "hot-c"],
        &["hot-c", "hot-b", "hot-a"],
        &["hot-b", "hot-a"],
        &["hot-c", "hot-a"],
        &["hot-b", "hot-c"],
        &["hot-a", "hot-c", "hot-b"],
    ];
    let bodies: Vec<Value> = (0..180)
        .map(|i| {
            let lines: Vec<(&str, i64)> = (sets[i % sets.len()].iter())
                .enumerate()
                .map(|(n, id)| (*id, ((i + n) % 3 + 1) as i64))
                .collect();
            items(&lines)
        })
        .collect();
    let at = |i: usize| instances[i % instances.len()];
    let ids = join_all(
        bodies
            .iter()
            .enumerate()
            .map(|(i, body)| at(i).placed(body)),
    )
    .await;
    let orders = join_all(
        ids.iter()
            .enumerate()
            .map(|(i, id)| at(i + 1).until_terminal(id)),
    )
    .await;

    let mut sold: HashMap<String, i64> = HashMap::new();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for order in &orders {
        let status = order["status"].as_str().expect("a status");
        *statuses.entry(status.to_owned()).or_default() += 1;
        let lines = order["items"].as_array().expect("items");
        let total: i64 = lines
            .iter()
            .map(|l| l["line_total"].as_i64().expect("a total"))
            .sum();
        assert_eq!(order["total_amount"], total, "{order}");
        if status == "CONFIRMED" {
            for line in lines {
                let id = line["product_id"].as_str().expect("an id").to_owned();
                *sold.entry(id).or_default() += line["quantity"].as_i64().expect("a quantity");
            }
        }
    }
    for (&id, &stock) in &initial {
        let left = app.stock_of(id).await;
        let sold = sold.get(id).copied().unwrap_or(0);
        assert!(left >= 0, "{id}");
        assert_eq!(stock, left + sold, "{id}: initial = left + confirmed lines");
    }
    assert!(
        statuses.get("CONFIRMED").is_some_and(|&n| n > 0),
        "{statuses:?}"
    );
    assert!(
        statuses.get("REJECTED").is_some_and(|&n| n > 0),
        "{statuses:?}"
    );
}
