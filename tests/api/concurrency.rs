//! Many shoppers at once: stock is never oversold and always conserved, and one
//! slow payment does not hold up anyone else's order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use support::{on_each_backend, spawn_app_declining, spawn_app_with};

#[on_each_backend]
async fn hundreds_of_concurrent_orders_never_oversell_and_conserve_stock() {
    let app = spawn_app_declining(0.3).await;
    let initial: HashMap<&str, i64> = [("hot-a", 40), ("hot-b", 25), ("hot-c", 10)].into();
    for (&id, &stock) in &initial {
        app.stock_product(id, 199, stock).await;
    }

    // 300 orders of 1 to 3 units for three products: far more than the 75 units.
    let wanted: Vec<(&str, i64)> = (0..300)
        .map(|i| (["hot-a", "hot-b", "hot-c"][i % 3], (i % 3 + 1) as i64))
        .collect();
    // Each accepted (202) with an order id.
    let order_ids = join_all(wanted.iter().map(|&(id, qty)| app.order_id(id, qty))).await;
    let orders = join_all(order_ids.iter().map(|id| app.until_terminal(id))).await;

    let mut confirmed: HashMap<String, i64> = HashMap::new();
    let mut seen = HashMap::<String, usize>::new();
    for order in &orders {
        let status = order["status"].as_str().expect("a status").to_owned();
        *seen.entry(status.clone()).or_default() += 1;
        let payments = app
            .payments_of(order["order_id"].as_str().expect("an id"))
            .await;
        match status.as_str() {
            "CONFIRMED" => {
                *confirmed
                    .entry(order["product_id"].as_str().expect("id").to_owned())
                    .or_default() += order["quantity"].as_i64().expect("qty");
                assert_eq!(payments.len(), 1, "{order}");
                assert_eq!(payments[0]["status"], "SUCCEEDED");
            }
            "PAYMENT_FAILED" => {
                assert_eq!(payments.len(), 1, "{order}");
                assert_eq!(payments[0]["status"], "DECLINED");
            }
            "REJECTED" => assert!(payments.is_empty(), "{order}"),
            other => panic!("unexpected status {other}"),
        }
    }
    for (&id, &stock) in &initial {
        let now = app.stock_of(id).await;
        let sold = confirmed.get(id).copied().unwrap_or(0);
        assert!(now >= 0);
        assert_eq!(stock, now + sold, "{id}: initial = current + confirmed");
    }
    for status in ["CONFIRMED", "PAYMENT_FAILED", "REJECTED"] {
        assert!(
            seen.get(status).is_some_and(|&n| n > 0),
            "some {status}: {seen:?}"
        );
    }
}

/// Each payment takes 500 ms. Run one after another, 60 orders would take 30 s;
/// run as they must, side by side, they all finish in about one payment's time
/// (the bound leaves room for a loaded machine, not for payments in a row).
#[on_each_backend]
async fn a_slow_payment_does_not_hold_up_other_orders() {
    let app = spawn_app_with(|config| config.payment_latency_ms = 500).await;
    app.stock_product("slow", 100, 1000).await;

    let started = Instant::now();
    let ids = join_all((0..60).map(|_| app.order_id("slow", 1))).await;
    let orders = join_all(ids.iter().map(|id| app.until_terminal(id))).await;
    let took = started.elapsed();

    assert!(orders.iter().all(|o| o["status"] == "CONFIRMED"));
    assert!(
        took < Duration::from_secs(12),
        "60 payments of 500 ms took {took:?}: they ran one after another"
    );
}
