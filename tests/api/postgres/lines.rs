//! Orders of several lines placed on two instances that share one Postgres
//! database: their batches lock the same hot products from two processes, and
//! still never deadlock or oversell.

use crate::lines::overlapping_hot_orders;
use support::{on_postgres, spawn_app_with, test_database};

#[on_postgres]
async fn two_instances_deciding_overlapping_multi_line_orders_never_deadlock_or_oversell() {
    let database = test_database().await;
    let instance = || {
        let url = database.url.clone();
        spawn_app_with(move |config| {
            config.database_url = url;
            config.payment_failure_rate = 0.2;
            config.payment_seed = Some(5);
        })
    };
    let (one, two) = (instance().await, instance().await);

    overlapping_hot_orders(&[&one, &two]).await;
}
