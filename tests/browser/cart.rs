//! Shoppers with a cart: two products added from the catalog and a product's
//! page, a quantity changed, the cart checked out with a test card; a declined
//! card; and an order's outcome arriving as a toast on whatever page the
//! shopper went on to.

use fantoccini::Locator;

use crate::driver::Browser;
use support::{TestApp, spawn_app_with};

/// A shop with a moka pot and paper filters in stock, its payments taking
/// `payment_latency_ms`, and a browser to shop in it; `None` (after saying so
/// loudly) when no browser is installed here.
async fn stocked_shop(payment_latency_ms: u64) -> Option<(TestApp, Browser)> {
    let app = spawn_app_with(|config| config.payment_latency_ms = payment_latency_ms).await;
    for (id, name, price, stock) in [
        ("moka-pot", "Moka pot", 3450, 8),
        ("filters", "Paper filters", 690, 20),
    ] {
        let response = app.put_product(id, name, price, stock).await;
        assert!(response.status().is_success());
    }
    Some((app, Browser::start().await?))
}

/// Fills the card form and places the order.
async fn pay(browser: &Browser, number: &str) {
    for (field, value) in [
        ("#card_number", number),
        ("#exp_month", "12"),
        ("#exp_year", "2031"),
        ("#cvc", "123"),
    ] {
        browser.type_into(field, value).await;
    }
    browser.click("#checkout-form button[type=submit]").await;
}

/// Adds one of each of `products` from its page, waiting each time until the
/// header counts it in the cart, then goes to the checkout.
async fn to_checkout_with(browser: &Browser, app: &TestApp, products: &[&str]) {
    for (units, product_id) in (1..).zip(products) {
        browser
            .open(&app.url(&format!("/products/{product_id}")))
            .await;
        browser.click(&format!("#add-{product_id}")).await;
        browser
            .until_text("#cart-count", &format!("({units})"))
            .await;
    }
    browser.open(&app.url("/checkout")).await;
}

/// Adds two products, changes a quantity in the cart, checks out with 4242…
/// and sees the order confirmed with both lines.
#[actix_web::test]
async fn a_shopper_checks_out_a_cart_of_two_products_and_sees_it_confirmed() {
    let Some((app, browser)) = stocked_shop(300).await else {
        return;
    };

    browser.open(&app.url("/")).await;
    browser.click("#add-moka-pot").await;
    browser
        .until_text("#slot-moka-pot", "Added 1 × Moka pot")
        .await;
    browser.until_text("#cart-count", "(1)").await;
    browser.open(&app.url("/products/filters")).await;
    browser.type_into("#quantity-filters", "2").await;
    browser.click("#add-filters").await;
    browser.until_text("#cart-count", "(3)").await;

    browser.click("a[href='/cart']").await;
    browser.assert_shows("#cart-total", "$48.30").await;
    browser.assert_accessible("cart").await;
    browser.type_into("#cart-quantity-moka-pot", "2").await;
    browser
        .click("form[action='/cart/moka-pot'] button[value=update]")
        .await;
    browser.until_text("#cart-total", "$82.80").await;
    browser.until_text("#cart-count", "(4)").await;
    browser.screenshot("cart").await;

    browser.click("a[href='/checkout']").await;
    browser
        .assert_shows(".test-cards", "4000 0000 0000 0002")
        .await;
    browser.assert_accessible("checkout").await;
    pay(&browser, "4242 4242 4242 4242").await;
    browser.until_notified("Order confirmed").await;
    browser.screenshot("order-lines").await;
    let lines = browser.text_of(".order-panel table.lines").await;
    assert!(
        lines.contains("Moka pot") && lines.contains("Paper filters"),
        "{lines}"
    );
    assert!(lines.contains("$82.80"), "{lines}");
    browser
        .assert_shows(".order-facts", "Visa ending in 4242")
        .await;
    browser.assert_accessible("the order of two lines").await;
    assert_eq!(app.stock_of("moka-pot").await, 6);
    assert_eq!(app.stock_of("filters").await, 18);
    // Checked out, the cart is empty.
    assert!(!browser.text_of("#cart-count").await.contains('('));
    browser.finish().await;
}

/// The card is declined: the order page says why, and every line's stock is back.
#[actix_web::test]
async fn a_declined_card_at_checkout_is_shown_and_every_line_comes_back() {
    let Some((app, browser)) = stocked_shop(200).await else {
        return;
    };

    to_checkout_with(&browser, &app, &["moka-pot", "filters"]).await;
    // A mistyped card first: the refusal stands beside the field.
    pay(&browser, "4000 0000 0000 0003").await;
    browser.until_text("#card_number-error", "typo").await;
    browser.screenshot("checkout").await;
    browser.assert_accessible("checkout with a refusal").await;
    pay(&browser, "4000 0000 0000 0002").await;

    let notice = browser.until_notified("Payment failed").await;
    assert!(notice.contains("card declined"), "{notice}");
    browser.assert_accessible("a declined order").await;
    assert_eq!(app.stock_of("moka-pot").await, 8);
    assert_eq!(app.stock_of("filters").await, 20);
    // Back into the cart, to pay another way.
    browser.click(".notifications .again button").await;
    let cart = browser.until_text("#cart", "Moka pot").await;
    assert!(cart.contains("Paper filters"), "{cart}");
    browser.until_text("#cart-count", "(2)").await;
    browser.finish().await;
}

/// With a slow payment the shopper goes back to the catalog: the outcome comes
/// to them there, as a toast with a link to the order.
#[actix_web::test]
async fn an_orders_outcome_finds_the_shopper_on_the_catalog() {
    let Some((app, browser)) = stocked_shop(2_000).await else {
        return;
    };

    to_checkout_with(&browser, &app, &["moka-pot"]).await;
    pay(&browser, "4242424242424242").await;
    browser.until_text(".step.current", "Payment").await;
    browser.open(&app.url("/")).await;
    browser.mark_page().await;

    let toast = browser.until_text("#toasts", "Order confirmed").await;
    assert!(toast.contains("View order"), "{toast}");
    assert!(browser.page_was_not_reloaded().await);
    let link = browser
        .client
        .find(Locator::Css("#toasts a"))
        .await
        .expect("a link");
    let href = link.attr("href").await.expect("href").unwrap_or_default();
    assert!(href.starts_with("/orders/"), "{href}");
    browser.screenshot("toast").await;
    browser.assert_accessible("the catalog with a toast").await;
    browser.finish().await;
}
