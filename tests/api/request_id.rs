//! Every answer carries the request's id (`X-Request-Id`): the gateway's when it
//! sent a sane one, otherwise one the app made, never whatever a client wrote.

use reqwest::{Response, StatusCode};
use uuid::Uuid;

use support::{TestApp, on_each_backend, spawn_app};

async fn get_with_id(app: &TestApp, path: &str, id: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("X-Request-Id", id)
        .send()
        .await
        .expect("GET")
}

fn request_id(response: &Response) -> String {
    let ids: Vec<_> = response.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "exactly one X-Request-Id: {ids:?}");
    ids[0].to_str().expect("an ASCII id").to_owned()
}

fn assert_generated(id: &str, context: &str) {
    assert!(
        Uuid::parse_str(id).is_ok(),
        "{context}: the app makes a UUID, got {id:?}"
    );
}

#[on_each_backend]
async fn a_gateway_id_is_kept_on_every_kind_of_answer() {
    let app = spawn_app().await;
    let gateway_id = "5f2a9c0e8b7d4e61a3c2b1f0e9d8c7b6";

    for (path, status) in [
        ("/healthz", StatusCode::OK),
        ("/api/products/no-such-product", StatusCode::NOT_FOUND),
        ("/api/orders/not-an-id", StatusCode::BAD_REQUEST),
        ("/", StatusCode::OK),
        ("/no/such/page", StatusCode::NOT_FOUND),
    ] {
        let response = get_with_id(&app, path, gateway_id).await;

        assert_eq!(response.status(), status, "{path}");
        assert_eq!(request_id(&response), gateway_id, "{path}");
    }
}

#[on_each_backend]
async fn without_an_id_each_request_gets_its_own() {
    let app = spawn_app().await;

    let first = request_id(&app.get("/healthz").await);
    let second = request_id(&app.get("/healthz").await);

    assert_generated(&first, "no header");
    assert_generated(&second, "no header");
    assert_ne!(first, second);
}

#[on_each_backend]
async fn an_id_that_could_garble_the_log_is_replaced() {
    let app = spawn_app().await;
    let longest = "a".repeat(64);
    let too_long = "a".repeat(65);

    let kept = request_id(&get_with_id(&app, "/healthz", &longest).await);
    assert_eq!(kept, longest, "64 characters are enough for any gateway");

    for refused in [
        "",
        too_long.as_str(),
        "two words",
        "key=value",
        "a\"b",
        "x;y",
    ] {
        let id = request_id(&get_with_id(&app, "/healthz", refused).await);

        assert_generated(&id, refused);
    }
}
