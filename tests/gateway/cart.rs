//! A shopper's cart behind nginx, with two instances on one Postgres: the
//! gateway spreads the shopper's requests over both, and the cart is the same
//! on each; the checkout places one order, and the shopper's stream of outcomes
//! reaches the browser through nginx as the app writes it.

use reqwest::StatusCode;
use reqwest::redirect::Policy;

use support::gateway::two_instances_behind_nginx;
use support::stream_to_end;

#[actix_web::test]
async fn a_cart_behind_nginx_is_one_cart_on_two_instances_and_its_outcome_streams_through() {
    let env = [("MINIMART_PAYMENT_LATENCY_MS", "300")];
    let Some((_cluster, _first, _second, gateway)) =
        two_instances_behind_nginx(&env, |conf| conf).await
    else {
        return;
    };
    gateway.stock_product("gw-mug", "Mug", 1450, 10).await;
    let shopper = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("a client");

    // Round robin: the adds land on both instances.
    for _ in 0..4 {
        let added = (shopper.post(gateway.url("/cart")))
            .form(&[("product_id", "gw-mug"), ("quantity", "1")])
            .send()
            .await
            .expect("POST /cart");
        assert_eq!(added.status(), StatusCode::SEE_OTHER);
    }
    for _ in 0..2 {
        let cart = shopper.get(gateway.url("/cart")).send().await.expect("GET");
        let cart = cart.text().await.expect("a page");
        assert!(
            cart.contains(r#"value="4""#),
            "four mugs on every instance: {cart}"
        );
    }
    let checkout = shopper
        .get(gateway.url("/checkout"))
        .send()
        .await
        .expect("GET");
    let checkout = checkout.text().await.expect("a page");
    let key = checkout
        .split(r#"name="idempotency_key" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's key")
        .to_owned();
    let form = [
        ("card_number", "4242 4242 4242 4242"),
        ("exp_month", "12"),
        ("exp_year", "2031"),
        ("cvc", "123"),
        ("idempotency_key", key.as_str()),
        ("cart", "gw-mug:4"),
    ];
    let placed = (shopper.post(gateway.url("/checkout")).form(&form).send())
        .await
        .expect("POST /checkout");
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    let order_page = (placed.headers().get("location"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(order_page.starts_with("/orders/"), "{order_page}");

    let body = stream_to_end(&shopper, &gateway.url("/orders/events")).await;
    assert!(
        body.contains("event: outcome") && body.contains("Order confirmed"),
        "{body}"
    );
    assert!(body.contains(&format!(r#"href="{order_page}""#)), "{body}");
    assert!(body.contains("event: done"), "{body}");
    let cart = shopper.get(gateway.url("/cart")).send().await.expect("GET");
    assert!(
        cart.text()
            .await
            .expect("a page")
            .contains("Your cart is empty")
    );
    let mug = (shopper
        .get(gateway.url("/api/products/gw-mug"))
        .send()
        .await)
        .expect("GET")
        .json::<serde_json::Value>()
        .await
        .expect("JSON");
    assert_eq!(mug["stock"], 6);
}
