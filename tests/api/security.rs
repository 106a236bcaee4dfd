//! What a security review checks, as an attacker or a careless client would try
//! it: admin sessions that end, cookies that cannot be stretched, token guesses
//! that are slowed down, idempotency keys that stay their owner's, buy forms
//! that refuse other sites, and pages no cache keeps.

use actix_web::cookie::{Cookie, CookieJar, Key};
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, ORIGIN, RETRY_AFTER, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use serde_json::json;

use crate::pages::{browser, input_value, page};
use support::{ADMIN_TOKEN, TestApp, assert_problem, on_each_backend, spawn_app, spawn_app_with};

const SESSION_KEY: &str = "a session key of at least thirty-two bytes, for the tests";

/// A client that shows redirects instead of following them, without cookies.
fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The admin session cookie a sign-in sets, as `name=value`.
pub async fn sign_in(app: &TestApp) -> String {
    let response = no_redirects()
        .post(app.url("/admin/sign-in"))
        .form(&[("token", ADMIN_TOKEN)])
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
    let guess = |token: &'static str| {
        app.client
            .post(app.url("/admin/sign-in"))
            .form(&[("token", token)])
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            guess("wrong").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = guess("wrong").await.unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key(RETRY_AFTER));
    assert!(
        locked.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // Locked out, even the right token is not looked at.
    let right = guess(ADMIN_TOKEN).await.unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);

    // The API's bearer token counts against the same address.
    let bearer = app
        .client
        .post(app.url("/api/products/lamp"))
        .header(AUTHORIZATION, "Bearer wrong")
        .json(&json!({"product_name": "Lamp", "price": 100, "stock": 1}))
        .send()
        .await
        .unwrap();
    assert!(bearer.headers().contains_key(RETRY_AFTER));
    let problem = assert_problem(bearer, StatusCode::TOO_MANY_REQUESTS, "bearer").await;
    assert_eq!(problem["code"], "too_many_attempts");
}

#[on_each_backend]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for (n, scheme) in ["bearer", "BEARER", "Bearer"].into_iter().enumerate() {
        let response = app
            .client
            .post(app.url(&format!("/api/products/p{n}")))
            .header(AUTHORIZATION, format!("{scheme} {ADMIN_TOKEN}"))
            .json(&json!({"product_name": "Lamp", "price": 100, "stock": 1}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{scheme}: {}",
            response.status()
        );
    }
}

/// A buy form post from `client`, as a browser on `origin` would send it.
async fn buy(app: &TestApp, client: &Client, key: &str, origin: Option<&str>) -> Response {
    let mut post = client.post(app.url("/orders")).form(&[
        ("product_id", "mug"),
        ("quantity", "1"),
        ("idempotency_key", key),
    ]);
    if let Some(origin) = origin {
        post = post.header(ORIGIN, origin);
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
    let alice_order = location(&buy(&app, &alice, "buy-1", None).await);
    assert_eq!(
        location(&buy(&app, &alice, "buy-1", None).await),
        alice_order
    );
    let bob_order = location(&buy(&app, &bob, "buy-1", None).await);
    assert_ne!(bob_order, alice_order, "another shopper's key is not yours");

    // The API's keys are a space of their own.
    let api = app
        .client
        .post(app.url("/api/orders"))
        .header("Idempotency-Key", "buy-1")
        .json(&json!({"product_id": "mug", "quantity": 1}))
        .send()
        .await
        .unwrap();
    let api_order = api.json::<serde_json::Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!alice_order.ends_with(&api_order) && !bob_order.ends_with(&api_order));
}

#[on_each_backend]
async fn an_idempotency_key_is_forgotten_after_its_time() {
    let app = spawn_app_with(|c| c.idempotency_ttl_secs = 1).await;
    app.stock_product("mug", 1450, 10).await;
    let place = || {
        app.client
            .post(app.url("/api/orders"))
            .header("Idempotency-Key", "once-a-day")
            .json(&json!({"product_id": "mug", "quantity": 1}))
            .send()
    };
    let order_id = |response: Response| async move {
        response.json::<serde_json::Value>().await.unwrap()["order_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = order_id(place().await.unwrap()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let again = order_id(place().await.unwrap()).await;
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
    for (origin, fetch_site) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("cross-site")),
    ] {
        let mut post = Client::new().post(app.url("/orders")).form(&[
            ("product_id", "mug"),
            ("quantity", "1"),
            ("idempotency_key", "k"),
        ]);
        if let Some(origin) = origin {
            post = post.header(ORIGIN, origin);
        }
        if let Some(site) = fetch_site {
            post = post.header("Sec-Fetch-Site", site);
        }
        let refused = post.send().await.unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::FORBIDDEN,
            "{origin:?} {fetch_site:?}"
        );
        assert!(
            refused.headers().get(SET_COOKIE).is_none(),
            "no shopper cookie for a refused post"
        );
    }
    assert_eq!(app.stock_of("mug").await, 10, "nothing was ordered");

    // The shop's own origin, as the browser on its pages sends it, buys.
    let own = app.address.clone();
    let bought = buy(&app, &browser(), "k", Some(&own)).await;
    assert_eq!(bought.status(), StatusCode::SEE_OTHER);
}

#[on_each_backend]
async fn over_https_cookies_are_secure() {
    let app = spawn_app_with(|c| c.public_url = Some("https://shop.test".parse().unwrap())).await;
    let catalog = app.get("/").await;
    let shopper = catalog.headers()[SET_COOKIE].to_str().unwrap();
    assert!(shopper.contains("Secure"), "{shopper}");

    let signed_in = no_redirects()
        .post(app.url("/admin/sign-in"))
        .header(ORIGIN, "https://shop.test")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let admin = signed_in.headers()[SET_COOKIE].to_str().unwrap();
    assert!(admin.contains("Secure"), "{admin}");

    // The listener's own address is not the public origin.
    let elsewhere = Client::new()
        .post(app.url("/admin/sign-in"))
        .header(ORIGIN, app.address.as_str())
        .form(&[("token", ADMIN_TOKEN)])
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
            response
                .headers()
                .get(CACHE_CONTROL)
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{path}"
        );
    }
    let (_, catalog) = page(&client, &app, "/").await;
    assert!(!catalog.is_empty());
    let catalog = client.get(app.url("/")).send().await.unwrap();
    assert_ne!(
        catalog
            .headers()
            .get(CACHE_CONTROL)
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "the catalog is the same for everyone"
    );
}
