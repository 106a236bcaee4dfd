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

fn cases() -> Vec<Case> {
    use StatusCode as S;
    let long_id = "x".repeat(65);
    let huge = format!(
        r#"{{"product_id":"tea","quantity":1,"pad":"{}"}}"#,
        "x".repeat(20_000)
    );
    vec![
        order("malformed JSON", "{", S::BAD_REQUEST),
        order("empty body", "", S::BAD_REQUEST),
        order(
            "trailing garbage",
            r#"{"product_id":"tea","quantity":1} x"#,
            S::BAD_REQUEST,
        ),
        order("a JSON array", "[1, 2]", S::UNPROCESSABLE_ENTITY),
        order("JSON null", "null", S::UNPROCESSABLE_ENTITY),
        order(
            "product id of the wrong type",
            r#"{"product_id":5,"quantity":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("product_id"),
        order(
            "quantity as a string",
            r#"{"product_id":"tea","quantity":"2"}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("quantity"),
        order(
            "missing quantity",
            r#"{"product_id":"tea"}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("quantity"),
        order(
            "missing product id",
            r#"{"quantity":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("product_id"),
        order(
            "zero quantity",
            r#"{"product_id":"tea","quantity":0}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("quantity"),
        order(
            "negative quantity",
            r#"{"product_id":"tea","quantity":-3}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("quantity"),
        order(
            "fractional quantity",
            r#"{"product_id":"tea","quantity":1.5}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("quantity"),
        order(
            "absurd quantity",
            r#"{"product_id":"tea","quantity":1000001}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("quantity"),
        order(
            "quantity past i64",
            r#"{"product_id":"tea","quantity":99999999999999999999}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("quantity"),
        order(
            "quantity in exponent form",
            r#"{"product_id":"tea","quantity":1e30}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("quantity"),
        order(
            "over-long product id",
            &format!(r#"{{"product_id":"{long_id}","quantity":1}}"#),
            S::UNPROCESSABLE_ENTITY,
        )
        .field("product_id"),
        order(
            "product id with a quote",
            r#"{"product_id":"tea' OR '1'='1","quantity":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("product_id"),
        order(
            "unknown product",
            r#"{"product_id":"coffee","quantity":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("product_id"),
        Case {
            content_type: Some("text/plain"),
            ..order(
                "text content type",
                r#"{"product_id":"tea","quantity":1}"#,
                S::UNSUPPORTED_MEDIA_TYPE,
            )
        },
        Case {
            content_type: None,
            ..order(
                "no content type",
                r#"{"product_id":"tea","quantity":1}"#,
                S::UNSUPPORTED_MEDIA_TYPE,
            )
        },
        order("oversized body", &huge, S::PAYLOAD_TOO_LARGE),
        product(
            "zero price",
            "tea",
            r#"{"product_name":"Tea","price":0,"stock":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("price"),
        product(
            "negative price",
            "tea",
            r#"{"product_name":"Tea","price":-5,"stock":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("price"),
        product(
            "fractional price",
            "tea",
            r#"{"product_name":"Tea","price":3.5,"stock":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("price"),
        product(
            "price as a string",
            "tea",
            r#"{"product_name":"Tea","price":"350","stock":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("price"),
        product(
            "absurd price",
            "tea",
            r#"{"product_name":"Tea","price":1000000000000,"stock":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("price"),
        product(
            "negative stock",
            "tea",
            r#"{"product_name":"Tea","price":350,"stock":-1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("stock"),
        product(
            "fractional stock",
            "tea",
            r#"{"product_name":"Tea","price":350,"stock":0.5}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("stock"),
        product(
            "absurd stock",
            "tea",
            r#"{"product_name":"Tea","price":350,"stock":1000000000001}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("stock"),
        product(
            "blank name",
            "tea",
            r#"{"product_name":"   ","price":350,"stock":1}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("product_name"),
        product(
            "over-long name",
            "tea",
            &format!(
                r#"{{"product_name":"{}","price":350,"stock":1}}"#,
                "n".repeat(201)
            ),
            S::UNPROCESSABLE_ENTITY,
        )
        .field("product_name"),
        product(
            "missing stock",
            "tea",
            r#"{"product_name":"Tea","price":350}"#,
            S::UNPROCESSABLE_ENTITY,
        )
        .field("stock"),
        product(
            "over-long product id in the path",
            &long_id,
            r#"{"product_name":"Tea","price":350,"stock":1}"#,
            S::BAD_REQUEST,
        ),
        product(
            "product id with a space",
            "te%20a",
            r#"{"product_name":"Tea","price":350,"stock":1}"#,
            S::BAD_REQUEST,
        ),
        product(
            "product id with a dot",
            "te.a",
            r#"{"product_name":"Tea","price":350,"stock":1}"#,
            S::BAD_REQUEST,
        ),
        get("non-UUID order id", "/api/orders/12345", S::BAD_REQUEST),
        get(
            "SQL in an order id",
            "/api/orders/1%27%20OR%201=1",
            S::BAD_REQUEST,
        ),
        get(
            "unknown order",
            &format!("/api/orders/{}", uuid::Uuid::now_v7()),
            S::NOT_FOUND,
        ),
        get("non-UUID payment id", "/api/payments/abc", S::BAD_REQUEST),
        get("payments without an order", "/api/payments", S::BAD_REQUEST),
        get(
            "payments of a non-UUID order",
            "/api/payments?order_id=abc",
            S::BAD_REQUEST,
        ),
        get(
            "over-long product id",
            &format!("/api/products/{long_id}"),
            S::BAD_REQUEST,
        ),
        get("zero page size", "/api/products?limit=0", S::BAD_REQUEST),
        get(
            "huge page size",
            "/api/products?limit=100000",
            S::BAD_REQUEST,
        ),
        get(
            "page size not a number",
            "/api/products?limit=ten",
            S::BAD_REQUEST,
        ),
        get("bad page cursor", "/api/products?after=a.b", S::BAD_REQUEST),
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
    ]
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
