//! Admin sessions across instances that share one Postgres database: the key
//! that seals their cookies is made once and shared, a session ended on one
//! instance is ended on all, and a new admin token ends every session.

use crate::security::{dashboard_csrf, sign_in, sign_out};
use support::{TestApp, on_postgres, spawn_app_with, test_database};

async fn instance(url: &str, token: &str) -> TestApp {
    let (url, token) = (url.to_owned(), token.parse().unwrap());
    spawn_app_with(move |config| {
        config.database_url = url;
        config.admin_token = Some(token);
    })
    .await
}

#[on_postgres]
async fn a_session_ended_on_one_instance_is_ended_on_every_instance() {
    let database = test_database().await;
    let one = instance(&database.url, support::ADMIN_TOKEN).await;
    let two = instance(&database.url, support::ADMIN_TOKEN).await;

    let cookie = sign_in(&one).await;
    let csrf = dashboard_csrf(&two, &cookie)
        .await
        .expect("the other instance opens the session: they share the key");
    sign_out(&two, &cookie, &csrf).await;

    assert_eq!(dashboard_csrf(&one, &cookie).await, None);
}

#[on_postgres]
async fn a_new_admin_token_ends_every_session() {
    let database = test_database().await;
    let old = instance(&database.url, support::ADMIN_TOKEN).await;
    let cookie = sign_in(&old).await;

    // The operator rotates the token: an instance started with the new one.
    let new = instance(&database.url, "a-rotated-admin-token").await;

    assert_eq!(dashboard_csrf(&new, &cookie).await, None);
    assert!(
        dashboard_csrf(&old, &cookie).await.is_some(),
        "only the instance still on the old token knows it"
    );
}
