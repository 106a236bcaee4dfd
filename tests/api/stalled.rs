//! A saga whose steps keep failing is marked stalled for the operator, listed
//! with its last error on the admin's orders page, and retried at once when the
//! operator asks, once the cause is mended. The database is made to fail on
//! purpose: a trigger refuses every payment.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::Connection;

use crate::pages::{input_value, page, signed_in_admin};
use support::{spawn_app_with, test_database};

const REFUSE_PAYMENTS: &str = "CREATE TRIGGER refuse_payments BEFORE INSERT ON payment \
     BEGIN SELECT RAISE(ABORT, 'payments fail on purpose'); END";

#[actix_web::test]
async fn a_saga_that_keeps_failing_is_shown_stalled_and_retried_on_request() {
    let database = test_database().await;
    let url = database.url.clone();
    let app = spawn_app_with(move |config| {
        config.database_url = url;
        config.saga_stall_after = Duration::from_millis(500);
    })
    .await;
    app.stock_product("lamp", 1200, 5).await;
    let mut db = sqlx::SqliteConnection::connect(&database.url)
        .await
        .unwrap();
    sqlx::query(REFUSE_PAYMENTS).execute(&mut db).await.unwrap();

    let order_id = app.order_id("lamp", 1).await;

    let admin = signed_in_admin(&app).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let stalled = loop {
        let (status, stalled) = page(&admin, &app, "/admin/orders?stalled=1").await;
        assert_eq!(status, StatusCode::OK);
        if stalled.contains(&order_id) {
            break stalled;
        }
        assert!(
            Instant::now() < deadline,
            "the order never showed as stalled"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        stalled.contains("payments fail on purpose"),
        "its last error: {stalled}"
    );
    assert!(stalled.contains("RESERVED"), "the step it is stuck at");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let counted = metrics
        .lines()
        .find_map(|line| line.strip_prefix("minimart_sagas_stalled "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(
        counted.is_some_and(|n| n >= 1.0),
        "counted as stalled: {counted:?}"
    );
    assert_eq!(
        app.get_json(&format!("/api/orders/{order_id}")).await["status"],
        "PENDING"
    );

    // The operator mends the cause and asks for a retry now: the saga's next
    // wait would be the longest backoff.
    sqlx::query("DROP TRIGGER refuse_payments")
        .execute(&mut db)
        .await
        .unwrap();
    let retried = admin
        .post(app.url(&format!("/admin/orders/{order_id}/retry")))
        .form(&[("csrf", input_value(&stalled, "csrf"))])
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::SEE_OTHER);
    let decided = app.until_terminal(&order_id).await;
    assert_eq!(decided["status"], "CONFIRMED");
    let (_, after) = page(&admin, &app, "/admin/orders?stalled=1").await;
    assert!(!after.contains(&order_id), "no longer stalled: {after}");
}
