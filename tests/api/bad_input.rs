//! Bad input gets a clear 4xx problem and changes nothing. Each row is one thing a
//! careless or hostile client might send.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use support::{ADMIN_TOKEN, TestApp, assert_problem, on_each_backend, spawn_app};

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Option<String>,
    admin: bool,
    expect: StatusCode,
    /// The field the problem names (`field`), for a refused body field.
    field: Option<&'static str>,
}

impl Case {
    fn field(self, field: &'static str) -> Case {
        Case {
            field: Some(field),
            ..self
        }
    }
}

fn order(what: &'static str, body: &str, expect: StatusCode) -> Case {
    Case {
        what,
        method: Method::POST,
        path: "/api/orders".to_owned(),
        content_type: Some("application/json"),
        body: Some(body.to_owned()),
        admin: false,
        expect,
        field: None,
    }
}

fn product(what: &'static str, id: &str, body: &str, expect: StatusCode) -> Case {
    Case {
        what,
        method: Method::POST,
        path: format!("/api/products/{id}"),
        content_type: Some("application/json"),
        body: Some(body.to_owned()),
        admin: true,
        expect,
        field: None,
    }
}

fn get(what: &'static str, path: &str, expect: StatusCode) -> Case {
    Case {
        what,
        method: Method::GET,
        path: path.to_owned(),
        content_type: None,
        body: None,
        admin: false,
        expect,
        field: None,
    }
}

fn payment(what: &'static str, body: &str, expect: StatusCode) -> Case {
    Case {
        path: "/api/payments".to_owned(),
        ..order(what, body, expect)
    }
}

/// An order whose body is refused for its `field`.
fn refused_order(what: &'static str, body: &str, field: &'static str) -> Case {
    order(what, body, StatusCode::UNPROCESSABLE_ENTITY).field(field)
}

/// The product `tea`, whose body is refused for its `field`.
fn refused_product(what: &'static str, body: &str, field: &'static str) -> Case {
    product(what, "tea", body, StatusCode::UNPROCESSABLE_ENTITY).field(field)
}

fn cases() -> Vec<Case> {
    use StatusCode as S;
    let long_id = "x".repeat(65);
    let huge = format!(
        r#"{{"product_id":"tea","quantity":1,"pad":"{}"}}"#,
        "x".repeat(20_000)
    );
    // Order bodies: one of `id` (the product), or of tea in `quantity`.
    let id = |id: &str| format!(r#"{{"product_id":"{id}","quantity":1}}"#);
    let quantity = |quantity: &str| format!(r#"{{"product_id":"tea","quantity":{quantity}}}"#);
    let tea = id("tea");
    // Product bodies.
    let named = |name: &str, price: &str, stock: &str| {
        format!(r#"{{"product_name":"{name}","price":{price},"stock":{stock}}}"#)
    };
    let priced = |price: &str| named("Tea", price, "1");
    let stocked = |stock: &str| named("Tea", "350", stock);
    let mut cases = vec![
        order("malformed JSON", "{", S::BAD_REQUEST),
        order("empty body", "", S::BAD_REQUEST),
        order("trailing garbage", &format!("{tea} x"), S::BAD_REQUEST),
        order("a JSON array", "[1, 2]", S::UNPROCESSABLE_ENTITY),
        order("JSON null", "null", S::UNPROCESSABLE_ENTITY),
        refused_order(
            "product id of the wrong type",
            r#"{"product_id":5,"quantity":1}"#,
            "product_id",
        ),
        refused_order("quantity as a string", &quantity(r#""2""#), "quantity"),
        refused_order("missing quantity", r#"{"product_id":"tea"}"#, "quantity"),
        refused_order("missing product id", r#"{"quantity":1}"#, "product_id"),
        refused_order("zero quantity", &quantity("0"), "quantity"),
        refused_order("negative quantity", &quantity("-3"), "quantity"),
        refused_order("fractional quantity", &quantity("1.5"), "quantity"),
        refused_order("absurd quantity", &quantity("1000001"), "quantity"),
        refused_order(
            "quantity past i64",
            &quantity("99999999999999999999"),
            "quantity",
        ),
        refused_order("quantity in exponent form", &quantity("1e30"), "quantity"),
        refused_order("over-long product id", &id(&long_id), "product_id"),
        refused_order(
            "product id with a quote",
            &id("tea' OR '1'='1"),
            "product_id",
        ),
        refused_order("unknown product", &id("coffee"), "product_id"),
        Case {
            content_type: Some("text/plain"),
            ..order("text content type", &tea, S::UNSUPPORTED_MEDIA_TYPE)
        },
        Case {
            content_type: None,
            ..order("no content type", &tea, S::UNSUPPORTED_MEDIA_TYPE)
        },
        order("oversized body", &huge, S::PAYLOAD_TOO_LARGE),
        refused_product("zero price", &priced("0"), "price"),
        refused_product("negative price", &priced("-5"), "price"),
        refused_product("fractional price", &priced("3.5"), "price"),
        refused_product("price as a string", &priced(r#""350""#), "price"),
        refused_product("absurd price", &priced("1000000000000"), "price"),
        refused_product("negative stock", &stocked("-1"), "stock"),
        refused_product("fractional stock", &stocked("0.5"), "stock"),
        refused_product("absurd stock", &stocked("1000000000001"), "stock"),
        refused_product("blank name", &named("   ", "350", "1"), "product_name"),
        refused_product(
            "over-long name",
            &named(&"n".repeat(201), "350", "1"),
            "product_name",
        ),
        refused_product(
            "missing stock",
            r#"{"product_name":"Tea","price":350}"#,
            "stock",
        ),
        get(
            "unknown order",
            &format!("/api/orders/{}", uuid::Uuid::now_v7()),
            S::NOT_FOUND,
        ),
        payment(
            "payment for a non-UUID order",
            r#"{"order_id":"abc","total_amount":350}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("order_id"),
        payment(
            "fractional payment amount",
            &format!(
                r#"{{"order_id":"{}","total_amount":3.5}}"#,
                uuid::Uuid::now_v7()
            ),
            S::UNPROCESSABLE_ENTITY,
        )
        .field("total_amount"),
        payment(
            "payment without an amount",
            &format!(r#"{{"order_id":"{}"}}"#, uuid::Uuid::now_v7()),
            S::UNPROCESSABLE_ENTITY,
        )
        .field("total_amount"),
    ];
    // Product ids refused in the path, and GETs refused for their path.
    let ids = [
        ("over-long product id in the path", long_id.as_str()),
        ("product id with a space", "te%20a"),
        ("product id with a dot", "te.a"),
    ];
    cases.extend(ids.map(|(what, id)| product(what, id, &stocked("1"), S::BAD_REQUEST)));
    let long_path = format!("/api/products/{long_id}");
    let paths = [
        ("non-UUID order id", "/api/orders/12345"),
        ("SQL in an order id", "/api/orders/1%27%20OR%201=1"),
        ("non-UUID payment id", "/api/payments/abc"),
        ("payments without an order", "/api/payments"),
        ("payments of a non-UUID order", "/api/payments?order_id=abc"),
        ("over-long product id", long_path.as_str()),
        ("zero page size", "/api/products?limit=0"),
        ("huge page size", "/api/products?limit=100000"),
        ("page size not a number", "/api/products?limit=ten"),
        ("bad page cursor", "/api/products?after=a.b"),
    ];
    cases.extend(paths.map(|(what, path)| get(what, path, S::BAD_REQUEST)));
    cases
}

async fn send(app: &TestApp, case: &Case) -> reqwest::Response {
    let mut request = app.client.request(case.method.clone(), app.url(&case.path));
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    if case.admin {
        request = request.bearer_auth(ADMIN_TOKEN);
    }
    request.send().await.expect("the request is answered")
}

#[on_each_backend]
async fn every_bad_request_is_a_clear_4xx_that_changes_nothing() {
    let app = spawn_app().await;
    app.stock_product("tea", 350, 5).await;
    let before = app.get_json("/api/products").await;

    for case in cases() {
        let response = send(&app, &case).await;
        let problem = assert_problem(response, case.expect, case.what).await;
        assert_eq!(
            problem.get("field").and_then(Value::as_str),
            case.field,
            "{}: {problem}",
            case.what
        );
    }

    let after: Value = app.get_json("/api/products").await;
    assert_eq!(before, after, "the catalog is unchanged");
    assert_eq!(
        after["products"],
        json!([{ "product_id": "tea", "product_name": "Product tea", "price": 350, "stock": 5 }])
    );
}

#[on_each_backend]
async fn a_bad_idempotency_key_is_refused() {
    let app = spawn_app().await;
    app.stock_product("tea", 350, 5).await;

    let response = app
        .client
        .post(app.url("/api/orders"))
        .header("Idempotency-Key", "k".repeat(300))
        .json(&json!({ "product_id": "tea", "quantity": 1 }))
        .send()
        .await
        .expect("POST");

    assert_problem(response, StatusCode::BAD_REQUEST, "over-long key").await;
    assert_eq!(app.stock_of("tea").await, 5);
}
