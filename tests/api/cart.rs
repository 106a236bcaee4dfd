//! The cart and the checkout over HTTP, as a browser without JavaScript uses
//! them (forms and redirects) and as htmx does (fragments): the cart belongs to
//! the browser's cookie, lives in the database (so another instance shows the
//! same cart), and checking it out places one order of all its lines, paid with
//! the card typed in, and empties it.

use reqwest::{Client, StatusCode};
use scraper::{Html, Selector};
use serde::Serialize;
use serde_json::Value;

use crate::pages::{browser, input_value, page, submit};
use support::{
    TestApp, header, on_each_backend, on_postgres, spawn_app, spawn_app_with, stream_to_end,
    test_database,
};

async fn htmx_post(
    client: &Client,
    app: &TestApp,
    path: &str,
    form: &(impl Serialize + ?Sized),
) -> reqwest::Response {
    (client.post(app.url(path)))
        .header("HX-Request", "true")
        .form(form)
        .send()
        .await
        .expect("POST")
}

async fn add(client: &Client, app: &TestApp, product_id: &str, quantity: &str) {
    let form = [
        ("product_id", product_id),
        ("quantity", quantity),
        ("idempotency_key", "unused"),
    ];
    let added = submit(client, app, "/cart", &form).await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER, "added {product_id}");
    assert_eq!(location(&added), "/cart");
}

fn location(response: &reqwest::Response) -> String {
    header(response, "location").unwrap_or_default().to_owned()
}

/// The form that sets a cart line to `quantity`.
fn set_to(quantity: &str) -> [(&'static str, &str); 2] {
    [("quantity", quantity), ("action", "update")]
}

/// A line of the cart as the page shows it.
fn row(name: &str, quantity: &str, total: &str) -> (String, String, String) {
    (name.to_owned(), quantity.to_owned(), total.to_owned())
}

/// The cart's lines as the page shows them: (product name, quantity, line total).
fn cart_rows(html: &str) -> Vec<(String, String, String)> {
    let html = Html::parse_document(html);
    let row = Selector::parse("#cart tbody tr").expect("a selector");
    let cell = Selector::parse("td").expect("a selector");
    let link = Selector::parse("a").expect("a selector");
    let quantity = Selector::parse("input[name=quantity]").expect("a selector");
    html.select(&row)
        .map(|row| {
            let cells: Vec<_> = row.select(&cell).collect();
            let name = cells[0]
                .select(&link)
                .next()
                .map(|a| a.text().collect::<String>());
            let units = row
                .select(&quantity)
                .next()
                .and_then(|input| input.attr("value"));
            (
                name.unwrap_or_default(),
                units.unwrap_or_default().to_owned(),
                cells[3].text().collect::<String>(),
            )
        })
        .collect()
}

fn text(html: &str, css: &str) -> String {
    let html = Html::parse_document(html);
    let selector = Selector::parse(css).expect("a selector");
    html.select(&selector)
        .map(|element| element.text().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn stocked(app: &TestApp) {
    for (id, name, price, stock) in [
        ("mug", "Mug", 1450, 10),
        ("filters", "Filters", 690, 20),
        ("beans", "Beans", 2490, 5),
    ] {
        let response = app.put_product(id, name, price, stock).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// A new shopper in the stocked shop, who has added `cart` (product, quantity).
async fn shopper_with(app: &TestApp, cart: &[(&str, &str)]) -> Client {
    stocked(app).await;
    let shopper = browser();
    for (product_id, quantity) in cart {
        add(&shopper, app, product_id, quantity).await;
    }
    shopper
}

/// The shopper's cart as its page shows it.
async fn the_cart(client: &Client, app: &TestApp) -> Vec<(String, String, String)> {
    let (_, cart) = page(client, app, "/cart").await;
    cart_rows(&cart)
}

/// A card as the form takes it: number, expiry month and year, CVC.
type Card<'a> = [&'a str; 4];

/// A card that pays.
const PAYS: Card<'static> = ["4242424242424242", "12", "2031", "123"];

/// The checkout page's form as a shopper fills it in: the card typed, and the
/// key and the cart the page holds.
fn filled(checkout: &str, [number, month, year, cvc]: Card<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("card_number", number.to_owned()),
        ("exp_month", month.to_owned()),
        ("exp_year", year.to_owned()),
        ("cvc", cvc.to_owned()),
        ("idempotency_key", input_value(checkout, "idempotency_key")),
        ("cart", input_value(checkout, "cart")),
    ]
}

/// The checkout page opened and its form filled in with `card`.
async fn checkout_form(
    client: &Client,
    app: &TestApp,
    card: Card<'_>,
) -> Vec<(&'static str, String)> {
    let (status, checkout) = page(client, app, "/checkout").await;
    assert_eq!(status, StatusCode::OK);
    filled(&checkout, card)
}

/// Checks the cart out with `card` by a plain form post; answers the redirect.
async fn check_out(client: &Client, app: &TestApp, card: &str) -> reqwest::Response {
    let form = checkout_form(client, app, [card, "12", "2031", "123"]).await;
    submit(client, app, "/checkout", &form).await
}

async fn order_json(app: &TestApp, order_path: &str) -> Value {
    let order_id = order_path.trim_start_matches("/orders/");
    app.until_terminal(order_id).await
}

#[on_each_backend]
async fn a_shopper_fills_a_cart_changes_it_and_checks_it_out_without_javascript() {
    let app = spawn_app().await;
    let shopper = shopper_with(&app, &[("mug", "1"), ("filters", "2"), ("beans", "1")]).await;
    // Adding again adds to the line.
    add(&shopper, &app, "mug", "1").await;
    let changed = submit(&shopper, &app, "/cart/filters", &set_to("3")).await;
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    let removed = submit(&shopper, &app, "/cart/beans", &[("action", "remove")]).await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);

    let (status, cart) = page(&shopper, &app, "/cart").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cart_rows(&cart),
        [row("Mug", "2", "$29.00"), row("Filters", "3", "$20.70")]
    );
    assert_eq!(text(&cart, "#cart-total"), "$49.70");
    assert!(
        text(&cart, "#cart-count").contains("(5)"),
        "{}",
        text(&cart, "#cart-count")
    );
    // Another browser has a cart of its own.
    assert!(the_cart(&browser(), &app).await.is_empty());

    let placed = check_out(&shopper, &app, "4242 4242 4242 4242").await;

    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    let order_page = location(&placed);
    assert!(order_page.starts_with("/orders/"), "{order_page}");
    let order = order_json(&app, &order_page).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let bought: Vec<(&str, i64)> = (order["items"].as_array().expect("items").iter())
        .map(|line| {
            (
                line["product_id"].as_str().unwrap_or(""),
                line["quantity"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(bought, [("mug", 2), ("filters", 3)]);
    assert_eq!(order["total_amount"], 4970);
    assert_eq!(order["payment_method"]["last4"], "4242");
    assert_eq!(app.stock_of("mug").await, 8);
    assert_eq!(app.stock_of("filters").await, 17);
    assert_eq!(app.stock_of("beans").await, 5);
    // The cart is empty, and the order page shows every line.
    let (_, cart) = page(&shopper, &app, "/cart").await;
    assert!(cart_rows(&cart).is_empty());
    assert!(text(&cart, "main").contains("Your cart is empty"));
    let (_, shown) = page(&shopper, &app, &order_page).await;
    let lines = text(&shown, ".order-panel table.lines tbody");
    assert!(
        lines.contains("Mug") && lines.contains("Filters"),
        "{lines}"
    );
    assert!(text(&shown, ".order-facts").contains("Visa ending in 4242"));
    let (_, mine) = page(&shopper, &app, "/orders").await;
    assert!(text(&mine, "table.orders").contains("2 × Mug"));
}

#[on_each_backend]
async fn a_second_submit_of_a_checkout_is_the_same_order() {
    let app = spawn_app().await;
    let shopper = shopper_with(&app, &[("mug", "1")]).await;
    let form = checkout_form(&shopper, &app, PAYS).await;

    let first = submit(&shopper, &app, "/checkout", &form).await;
    let second = submit(&shopper, &app, "/checkout", &form).await;

    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&first), location(&second));
    order_json(&app, &location(&first)).await;
    assert_eq!(app.stock_of("mug").await, 9, "one order, one mug");
}

#[on_each_backend]
async fn a_refused_card_is_shown_beside_its_fields_and_never_echoed() {
    let app = spawn_app().await;
    let shopper = shopper_with(&app, &[("mug", "1")]).await;
    let form = checkout_form(&shopper, &app, ["4242 4242 4242 4241", "1", "2020", "98"]).await;

    let refused = submit(&shopper, &app, "/checkout", &form).await;

    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.expect("a page");
    for field in ["card_number", "exp_year", "cvc"] {
        let error = text(&html, &format!("#{field}-error"));
        assert!(!error.is_empty(), "an error beside {field}");
        let input = Html::parse_document(&html);
        let selector = Selector::parse(&format!("#{field}")).expect("a selector");
        let input = input.select(&selector).next().expect("the field");
        assert_eq!(input.attr("aria-invalid"), Some("true"), "{field}");
        assert_eq!(
            input.attr("aria-describedby"),
            Some(format!("{field}-error").as_str())
        );
    }
    assert!(!html.contains("4242 4242 4242 4241") && !html.contains("4242424242424241"));
    assert!(!html.contains("\"98\""), "the CVC is not put back");
    // The expiry comes back as typed; the cart is untouched.
    assert_eq!(input_value(&html, "exp_year"), "2020");
    assert_eq!(the_cart(&shopper, &app).await.len(), 1);
    assert_eq!(app.stock_of("mug").await, 10);

    // With htmx, only the form comes back, for itself.
    let again = htmx_post(&shopper, &app, "/checkout", &form).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let fragment = again.text().await.expect("a fragment");
    assert!(fragment.starts_with("<form"), "{fragment}");
    assert!(fragment.contains("id=\"card_number-error\""));
}

#[on_each_backend]
async fn htmx_swaps_what_changed_and_follows_the_checkout_to_its_order() {
    let app = spawn_app().await;
    let shopper = shopper_with(&app, &[]).await;

    let added = htmx_post(
        &shopper,
        &app,
        "/cart",
        &[
            ("product_id", "mug"),
            ("quantity", "2"),
            ("idempotency_key", "k"),
        ],
    )
    .await;
    assert_eq!(added.status(), StatusCode::OK);
    let fragment = added.text().await.expect("a fragment");
    assert!(
        text(&fragment, ".added").contains("Added 2 × Mug"),
        "{fragment}"
    );
    assert!(fragment.contains(r#"id="cart-count""#) && fragment.contains(r#"hx-swap-oob="true""#));
    assert!(text(&fragment, "#cart-count").contains("(2)"));

    let changed = htmx_post(&shopper, &app, "/cart/mug", &set_to("4")).await;
    let fragment = changed.text().await.expect("a fragment");
    assert!(fragment.starts_with(r#"<section id="cart""#), "{fragment}");
    assert_eq!(cart_rows(&fragment), [row("Mug", "4", "$58.00")]);
    assert!(text(&fragment, "#cart-count").contains("(4)"));

    let form = checkout_form(&shopper, &app, PAYS).await;
    let placed = htmx_post(&shopper, &app, "/checkout", &form).await;
    assert_eq!(placed.status(), StatusCode::OK);
    let to = header(&placed, "hx-redirect").unwrap_or_default();
    assert!(to.starts_with("/orders/"), "{to}");
    assert_eq!(order_json(&app, to).await["status"], "CONFIRMED");
}

#[on_each_backend]
async fn the_shoppers_stream_tells_each_outcome_with_a_link_then_ends() {
    let app = spawn_app_with(|config| config.payment_latency_ms = 300).await;
    let shopper = shopper_with(&app, &[("beans", "1")]).await;

    let placed = check_out(&shopper, &app, "4000 0000 0000 0002").await;
    let order_page = location(&placed);
    // While it is pending, every page of the shop listens.
    let (_, catalog) = page(&shopper, &app, "/").await;
    let listens = Html::parse_document(&catalog);
    let toasts = Selector::parse("#toasts[sse-connect]").expect("a selector");
    let url = (listens.select(&toasts).next())
        .and_then(|region| region.attr("sse-connect"))
        .expect("the catalog listens")
        .to_owned();
    assert!(url.starts_with("/orders/events?since="), "{url}");
    let body = stream_to_end(&shopper, &app.url("/orders/events")).await;

    let outcome = body.find("event: outcome").expect("an outcome");
    assert!(body[outcome..].contains("Payment failed"), "{body}");
    assert!(body[outcome..].contains("card declined"), "{body}");
    assert!(
        body[outcome..].contains(&format!(r#"href="{order_page}""#)),
        "{body}"
    );
    assert!(
        body.find("event: done").is_some_and(|done| done > outcome),
        "{body}"
    );
    assert_eq!(app.stock_of("beans").await, 5, "every line is back");
    // The catalog's stream, connected only now that the order is decided,
    // still tells it: it was decided after the page was made.
    let late = stream_to_end(&shopper, &app.url(&url)).await;
    assert!(
        late.contains("event: outcome") && late.contains("card declined"),
        "{late}"
    );
    // Decided, the pages no longer listen, and the order page leaves out the
    // order it shows itself.
    let (_, catalog) = page(&shopper, &app, "/").await;
    assert!(!catalog.contains("sse-connect"));
    let order_id = order_page.trim_start_matches("/orders/");
    let own = format!("/orders/events?since=0&except={order_id}");
    let own = stream_to_end(&shopper, &app.url(&own)).await;
    // The failed order's lines go back into the cart, to pay another way.
    assert!(the_cart(&shopper, &app).await.is_empty());
    let (_, failed) = page(&shopper, &app, &order_page).await;
    assert!(
        failed.contains(&format!(r#"action="{order_page}/cart""#)),
        "{failed}"
    );
    let no_fields: [(&str, &str); 0] = [];
    let again = submit(&shopper, &app, &format!("{order_page}/cart"), &no_fields).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&again), "/cart");
    assert_eq!(
        the_cart(&shopper, &app).await,
        [row("Beans", "1", "$24.90")]
    );
    assert!(
        !own.contains("event: outcome") && own.contains("event: done"),
        "{own}"
    );
}

#[on_each_backend]
async fn the_cart_refuses_what_it_should_and_a_stale_checkout_buys_nothing() {
    let app = spawn_app().await;
    let shopper = shopper_with(&app, &[("mug", "2")]).await;

    // A quantity that is none: refused beside the line, which stays.
    let refused = submit(&shopper, &app, "/cart/mug", &set_to("0")).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.expect("a page");
    assert!(!text(&html, "#problem-mug").is_empty(), "{html}");
    assert_eq!(cart_rows(&html), [row("Mug", "2", "$29.00")]);
    // Setting a line that is not in the cart does not put it there.
    let set = submit(&shopper, &app, "/cart/beans", &set_to("3")).await;
    assert_eq!(set.status(), StatusCode::SEE_OTHER);
    assert_eq!(the_cart(&shopper, &app).await.len(), 1);
    // A product the shop does not sell cannot be added.
    let unknown = submit(
        &shopper,
        &app,
        "/cart",
        &[("product_id", "teapot"), ("quantity", "1")],
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // The checkout opened, then the cart changed in another tab: nothing is
    // bought, and the page shows the cart as it is now.
    let form = checkout_form(&shopper, &app, PAYS).await;
    assert_eq!(form[5], ("cart", "mug:2".to_owned()));
    add(&shopper, &app, "filters", "1").await;
    let stale = submit(&shopper, &app, "/checkout", &form).await;
    assert_eq!(stale.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = stale.text().await.expect("a page");
    assert!(html.contains("Your cart changed"), "{html}");
    assert_eq!(input_value(&html, "cart"), "mug:2,filters:1");
    assert_eq!(app.stock_of("mug").await, 10, "nothing was bought");
}

#[on_each_backend]
async fn another_site_cannot_change_a_cart_or_check_it_out() {
    let app = spawn_app().await;
    let shopper = shopper_with(&app, &[]).await;
    for (path, form) in [
        ("/cart", vec![("product_id", "mug"), ("quantity", "1")]),
        ("/cart/mug", vec![("action", "remove")]),
        ("/checkout", vec![("card_number", "4242424242424242")]),
    ] {
        let forged = (shopper.post(app.url(path)))
            .header("Origin", "https://evil.example")
            .form(&form)
            .send()
            .await
            .expect("POST");
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{path}");
    }
}

/// Two instances on one database, as behind the gateway: a cart filled through
/// one is the cart the other shows and checks out.
#[on_postgres]
async fn a_cart_is_the_same_on_every_instance() {
    let database = test_database().await;
    let instance = || {
        let url = database.url.clone();
        spawn_app_with(move |config| config.database_url = url)
    };
    let (one, two) = (instance().await, instance().await);
    stocked(&one).await;
    let shopper = browser();
    // The same cookie on both: the instances share the shop's origin.
    let (_, _) = page(&shopper, &one, "/").await;
    add(&shopper, &one, "mug", "3").await;

    assert_eq!(the_cart(&shopper, &two).await, [row("Mug", "3", "$43.50")]);
    let placed = check_out(&shopper, &two, "4242 4242 4242 4242").await;
    assert_eq!(
        order_json(&two, &location(&placed)).await["status"],
        "CONFIRMED"
    );
    assert!(the_cart(&shopper, &one).await.is_empty());
}

/// At the shop's limit a checkout is refused before anything is stored: 503
/// with `Retry-After`, the cart untouched, and the form again with the same key,
/// so that sending it once the shop has room is the same order.
#[on_each_backend]
async fn a_checkout_the_shop_sheds_keeps_the_cart_and_the_form() {
    let app = spawn_app_with(|config| {
        config.max_in_flight = 1;
        config.payment_latency_ms = 5_000;
    })
    .await;
    stocked(&app).await;
    // Someone else's order holds the one place for five seconds.
    assert_eq!(
        app.place_order("filters", 1).await.status(),
        StatusCode::ACCEPTED
    );
    let shopper = browser();
    add(&shopper, &app, "mug", "1").await;
    let (_, checkout) = page(&shopper, &app, "/checkout").await;
    let key = input_value(&checkout, "idempotency_key");
    let form = filled(&checkout, PAYS);

    let shed = submit(&shopper, &app, "/checkout", &form).await;

    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(shed.headers().contains_key("retry-after"));
    let html = shed.text().await.expect("a page");
    assert!(html.contains("very busy"), "{html}");
    assert_eq!(
        input_value(&html, "idempotency_key"),
        key,
        "the same order when sent again"
    );
    assert!(!html.contains("4242424242424242"));
    assert_eq!(
        the_cart(&shopper, &app).await.len(),
        1,
        "the cart is as it was"
    );
    assert_eq!(app.stock_of("mug").await, 10);
}

/// Two tabs check out the same cart at once, each with its own key: the cart's
/// lines are claimed once, so one order is placed and the other checkout is
/// told the cart changed.
#[on_each_backend]
async fn two_tabs_checking_out_one_cart_at_once_place_one_order() {
    let app = spawn_app().await;
    let shopper = shopper_with(&app, &[("mug", "2"), ("beans", "1")]).await;
    let one = checkout_form(&shopper, &app, PAYS).await;
    let two = checkout_form(&shopper, &app, PAYS).await;
    assert_ne!(one[4].1, two[4].1, "each tab has a key of its own");

    let send = |fields| shopper.post(app.url("/checkout")).form(fields).send();
    let (a, b) = futures_util::join!(send(&one), send(&two));
    let mut told: Vec<String> = [a, b]
        .into_iter()
        .map(|answer| {
            let answer = answer.expect("POST");
            assert_eq!(answer.status(), StatusCode::SEE_OTHER);
            location(&answer)
        })
        .collect();
    told.sort();

    // One tab lands on its order; the other finds the cart taken.
    assert_eq!(told[0], "/cart", "{told:?}");
    assert!(told[1].starts_with("/orders/"), "{told:?}");
    assert_eq!(order_json(&app, &told[1]).await["status"], "CONFIRMED");
    assert_eq!(app.stock_of("mug").await, 8, "two mugs, bought once");
    assert_eq!(app.stock_of("beans").await, 4);
    assert!(the_cart(&shopper, &app).await.is_empty());
}
