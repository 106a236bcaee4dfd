//! What a security review checks, as an attacker or a careless client would try
//! it: admin sessions that end, cookies that cannot be stretched, token guesses
//! that are slowed down, idempotency keys that stay their owner's, buy forms
//! that refuse other sites, and pages no cache keeps.

use actix_web::cookie::{Cookie, CookieJar, Key};
use reqwest::header::{AUTHORIZATION, COOKIE, ORIGIN, RETRY_AFTER, SET_COOKIE};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::json;

use crate::pages::{browser, input_value, page};
use support::{
    ADMIN_TOKEN, TestApp, assert_problem, content_type, header, keyed_order_id, on_each_backend,
    spawn_app, spawn_app_with,
};

const SESSION_KEY: &str = "a session key of at least thirty-two bytes, for the tests";

/// A client that shows redirects instead of following them, without cookies.
fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A sign-in with `token` from `client`, ready to send.
fn sign_in_with(client: &Client, app: &TestApp, token: &str) -> RequestBuilder {
    client
        .post(app.url("/admin/sign-in"))
        .form(&[("token", token)])
}

/// The admin session cookie a sign-in sets, as `name=value`.
pub async fn sign_in(app: &TestApp) -> String {
    let response = sign_in_with(&no_redirects(), app, ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    session_cookie(&response)
}

fn session_cookie(response: &Response) -> String {
    let set = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("minimart_admin="))
        .expect("a session cookie");
    set.split(';').next().unwrap().to_owned()
}

/// The dashboard's CSRF token for the session, or `None` when the cookie opens
/// no session (the sign-in page is shown instead).
pub async fn dashboard_csrf(app: &TestApp, cookie: &str) -> Option<String> {
    let page = app
        .client
        .get(app.url("/admin"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.contains("name=\"csrf\"")
        .then(|| input_value(&page, "csrf"))
}

async fn save_product(app: &TestApp, cookie: &str, csrf: &str, id: &str) -> StatusCode {
    no_redirects()
        .post(app.url("/admin/products"))
        .header(COOKIE, cookie)
        .form(&[
            ("csrf", csrf),
            ("product_id", id),
            ("product_name", "Lamp"),
            ("price", "12.00"),
            ("stock", "3"),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

pub async fn sign_out(app: &TestApp, cookie: &str, csrf: &str) {
    let response = app
        .client
        .post(app.url("/admin/sign-out"))
        .header(COOKIE, cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection() || response.status().is_success());
}

#[on_each_backend]
async fn signing_out_ends_that_session_for_good_and_no_other() {
    let app = spawn_app().await;
    let (kept, ended) = (sign_in(&app).await, sign_in(&app).await);
    assert_ne!(
        kept, ended,
        "two sign-ins in the same second are two sessions"
    );
    let csrf = dashboard_csrf(&app, &ended).await.expect("a session");

    sign_out(&app, &ended, &csrf).await;

    // A copy of the ended session's cookie and its CSRF token open nothing.
    assert_eq!(dashboard_csrf(&app, &ended).await, None);
    assert_eq!(
        save_product(&app, &ended, &csrf, "lamp").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/products/lamp").await.status(),
        StatusCode::NOT_FOUND
    );
    // The other session goes on.
    let csrf = dashboard_csrf(&app, &kept).await.expect("still signed in");
    assert_eq!(
        save_product(&app, &kept, &csrf, "lamp").await,
        StatusCode::SEE_OTHER
    );
}

/// The cookie's sealed content, and the same content sealed again with another
/// expiry, as only the holder of the session key could.
fn reseal(cookie: &str, expires: impl Fn(i64) -> i64) -> String {
    let key = Key::derive_from(SESSION_KEY.as_bytes());
    let sealed = Cookie::parse(cookie.to_owned()).unwrap();
    let opened = CookieJar::new()
        .private(&key)
        .decrypt(sealed)
        .expect("our key");
    let (id, expiry) = opened.value().split_once('.').unwrap();
    let value = format!("{id}.{}", expires(expiry.parse().unwrap()));
    let mut jar = CookieJar::new();
    jar.private_mut(&key)
        .add(Cookie::new("minimart_admin", value));
    jar.get("minimart_admin").unwrap().stripped().to_string()
}

#[on_each_backend]
async fn a_cookie_cannot_outlast_its_session_and_tells_nothing_of_the_token() {
    let app = spawn_app_with(|c| c.session_key = Some(SESSION_KEY.parse().unwrap())).await;
    let cookie = sign_in(&app).await;
    assert!(!cookie.contains(ADMIN_TOKEN));

    let same = reseal(&cookie, |expiry| expiry);
    assert!(
        dashboard_csrf(&app, &same).await.is_some(),
        "resealed as it was: valid"
    );
    let ten_years = reseal(&cookie, |expiry| expiry + 10 * 365 * 24 * 3600);
    assert_eq!(dashboard_csrf(&app, &ten_years).await, None);
    let tampered = cookie.replace('=', "=A");
    assert_eq!(dashboard_csrf(&app, &tampered).await, None);
}

#[on_each_backend]
async fn guessing_the_admin_token_is_slowed_down() {
    let app = spawn_app().await;
    let guess = |token: &str| sign_in_with(&app.client, &app, token).send();
    for _ in 0..5 {
        assert_eq!(
            guess("wrong").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = guess("wrong").await.unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key(RETRY_AFTER));
    assert!(content_type(&locked).starts_with("text/html"));
    // Locked out, even the right token is not looked at.
    let right = guess(ADMIN_TOKEN).await.unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);

    // The API's bearer token counts against the same address.
    let bearer = upsert_lamp(&app, "lamp", "Bearer wrong").await;
    assert!(bearer.headers().contains_key(RETRY_AFTER));
    let problem = assert_problem(bearer, StatusCode::TOO_MANY_REQUESTS, "bearer").await;
    assert_eq!(problem["code"], "too_many_attempts");
}

/// A lamp saved through the API as `id`, with `authorization` as its header.
async fn upsert_lamp(app: &TestApp, id: &str, authorization: &str) -> Response {
    app.client
        .post(app.url(&format!("/api/products/{id}")))
        .header(AUTHORIZATION, authorization)
        .json(&json!({"product_name": "Lamp", "price": 100, "stock": 1}))
        .send()
        .await
        .unwrap()
}

#[on_each_backend]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for (n, scheme) in ["bearer", "BEARER", "Bearer"].into_iter().enumerate() {
        let authorization = format!("{scheme} {ADMIN_TOKEN}");
        let response = upsert_lamp(&app, &format!("p{n}"), &authorization).await;
        assert!(
            response.status().is_success(),
            "{scheme}: {}",
            response.status()
        );
    }
}

/// A buy form post from `client`, with the `headers` a browser would add.
async fn buy(app: &TestApp, client: &Client, key: &str, headers: &[(&str, &str)]) -> Response {
    let mut post = client.post(app.url("/orders")).form(&[
        ("product_id", "mug"),
        ("quantity", "1"),
        ("idempotency_key", key),
    ]);
    for &(name, value) in headers {
        post = post.header(name, value);
    }
    post.send().await.unwrap()
}

fn location(response: &Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

#[on_each_backend]
async fn an_idempotency_key_is_its_owners() {
    let app = spawn_app().await;
    app.stock_product("mug", 1450, 10).await;
    let (alice, bob) = (browser(), browser());
    let order_of = async |shopper: &Client| location(&buy(&app, shopper, "buy-1", &[]).await);
    let alice_order = order_of(&alice).await;
    assert_eq!(order_of(&alice).await, alice_order);
    let bob_order = order_of(&bob).await;
    assert_ne!(bob_order, alice_order, "another shopper's key is not yours");

    // The API's keys are a space of their own.
    let api_order = keyed_order_id(&app.client, &app.address, ("buy-1", "mug", 1), false)
        .await
        .expect("an API order");
    assert!(!alice_order.ends_with(&api_order) && !bob_order.ends_with(&api_order));
}

#[on_each_backend]
async fn an_idempotency_key_is_forgotten_after_its_time() {
    let app = spawn_app_with(|c| c.idempotency_ttl_secs = 1).await;
    app.stock_product("mug", 1450, 10).await;
    let place = async || {
        keyed_order_id(&app.client, &app.address, ("once-a-day", "mug", 1), false)
            .await
            .expect("an order")
    };
    let first = place().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let again = place().await;
        if again != first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never forgotten"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[on_each_backend]
async fn buying_from_another_site_is_refused_and_leaves_no_trace() {
    let app = spawn_app().await;
    app.stock_product("mug", 1450, 10).await;
    for headers in [
        [("Origin", "https://evil.example")],
        [("Origin", "null")],
        [("Sec-Fetch-Site", "cross-site")],
    ] {
        let refused = buy(&app, &Client::new(), "k", &headers).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(
            refused.headers().get(SET_COOKIE).is_none(),
            "no shopper cookie for a refused post"
        );
    }
    assert_eq!(app.stock_of("mug").await, 10, "nothing was ordered");

    // The shop's own origin, as the browser on its pages sends it, buys.
    let own = app.address.clone();
    let bought = buy(&app, &browser(), "k", &[("Origin", &own)]).await;
    assert_eq!(bought.status(), StatusCode::SEE_OTHER);
}

#[on_each_backend]
async fn over_https_cookies_are_secure() {
    let app = spawn_app_with(|c| c.public_url = Some("https://shop.test".parse().unwrap())).await;
    let catalog = app.get("/").await;
    let shopper = catalog.headers()[SET_COOKIE].to_str().unwrap();
    assert!(shopper.contains("Secure"), "{shopper}");

    let signed_in = sign_in_with(&no_redirects(), &app, ADMIN_TOKEN)
        .header(ORIGIN, "https://shop.test")
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let admin = signed_in.headers()[SET_COOKIE].to_str().unwrap();
    assert!(admin.contains("Secure"), "{admin}");

    // The listener's own address is not the public origin.
    let elsewhere = sign_in_with(&Client::new(), &app, ADMIN_TOKEN)
        .header(ORIGIN, app.address.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
}

#[on_each_backend]
async fn admin_and_order_pages_are_not_stored() {
    let app = spawn_app().await;
    app.stock_product("mug", 1450, 10).await;
    let order_id = app.order_id("mug", 1).await;
    let client = browser();
    for path in ["/admin", "/orders", &format!("/orders/{order_id}")] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&response, "cache-control"),
            Some("no-store"),
            "{path}"
        );
    }
    let (_, catalog) = page(&client, &app, "/").await;
    assert!(!catalog.is_empty());
    let catalog = client.get(app.url("/")).send().await.unwrap();
    assert_ne!(
        header(&catalog, "cache-control"),
        Some("no-store"),
        "the catalog is the same for everyone"
    );
}
