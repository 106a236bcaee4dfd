//! An order that got a 2xx survives `kill -9`: the real binary is killed at random
//! moments while shoppers are ordering, restarted on the same database, and every
//! order must then reach a terminal status on its own, with stock conserved and no
//! order charged twice. Clients retry with their `Idempotency-Key`, as a real client
//! whose answer was lost would, so every order that exists is known.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::pages::browser;
use support::{
    ADMIN_TOKEN, Ledger, TestDatabase, assert_invariants, free_port, keyed_order_id,
    on_each_backend, put_product_at, test_database,
};

/// The minimart binary on its own database, stopped (SIGKILL) when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(database: &TestDatabase, port: u16) -> Server {
        Server::start_with(database, port, &[]).await
    }

    /// Starts with the crash test's settings, overridden by `env`.
    async fn start_with(database: &TestDatabase, port: u16, env: &[(&str, &str)]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_minimart"))
            .env("MINIMART_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &database.url)
            // On Postgres, a restarted instance takes over the orders of the one
            // that was killed once their lease runs out: keep that short here.
            .env("MINIMART_SAGA_LEASE_SECS", "1")
            .env("MINIMART_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("MINIMART_PAYMENT_LATENCY_MS", "15")
            .env("MINIMART_PAYMENT_FAILURE_RATE", "0.25")
            .env("MINIMART_DEMO_CATALOG", "false")
            .env("MINIMART_WORKERS", "2")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        server.until_healthy().await;
        server
    }

    async fn until_healthy(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = client.get(format!("{}/healthz", self.base)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become healthy"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PRODUCTS: [(&str, i64); 2] = [("crash-a", 60), ("crash-b", 35)];

/// Places an order; `None` when the server died before answering (a refusal fails).
async fn place(client: &reqwest::Client, base: &str, order: (&str, &str, i64)) -> Option<String> {
    keyed_order_id(client, base, order, false).await
}

/// Shoppers order as fast as they can until the server dies under them.
async fn shop_until_killed(base: String, ledger: Arc<Mutex<Ledger>>, shopper: usize, round: usize) {
    let client = reqwest::Client::new();
    for n in 0.. {
        let key = format!("r{round}-s{shopper}-{n}");
        let (product, quantity) = (PRODUCTS[n % 2].0, (n % 3 + 1) as i64);
        ledger
            .lock()
            .expect("ledger")
            .intend(&key, product, quantity);
        match place(&client, &base, (&key, product, quantity)).await {
            Some(order_id) => ledger.lock().expect("ledger").accept(&key, order_id),
            None => return, // the server is gone
        }
    }
}

/// A shopper's cart is in the database: the server killed and started again,
/// the same browser finds the same cart.
#[on_each_backend]
async fn a_cart_survives_kill_9_and_a_restart() {
    let database = test_database().await;
    let port = free_port();
    let shopper = browser();
    let server = Server::start(&database, port).await;
    let stocked = put_product_at(&shopper, &server.base, "crash-cart", "Cart mug", 250, 9).await;
    assert_eq!(stocked.status(), StatusCode::OK);
    let added = (shopper.post(format!("{}/cart", server.base)))
        .form(&[("product_id", "crash-cart"), ("quantity", "3")])
        .send()
        .await
        .expect("POST");
    assert_eq!(added.status(), StatusCode::SEE_OTHER);

    server.kill();
    let server = Server::start(&database, port).await;

    let cart = (shopper.get(format!("{}/cart", server.base)).send().await)
        .expect("GET")
        .text()
        .await
        .expect("a page");
    assert!(cart.contains("Cart mug"), "{cart}");
    assert!(cart.contains(r#"value="3""#), "{cart}");
}

#[on_each_backend]
async fn accepted_orders_survive_kill_9_and_finish_after_restart() {
    let database = test_database().await;
    let port = free_port();
    let client = reqwest::Client::new();

    let server = Server::start(&database, port).await;
    for (id, stock) in PRODUCTS {
        let response = put_product_at(&client, &server.base, id, id, 250, stock).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut server = Some(server);
    for round in 0..3 {
        let running = server.take().unwrap_or_else(|| unreachable!());
        let shoppers: Vec<_> = (0..8)
            .map(|shopper| {
                actix_rt::spawn(shop_until_killed(
                    running.base.clone(),
                    Arc::clone(&ledger),
                    shopper,
                    round,
                ))
            })
            .collect();
        let pause = rand::rng().random_range(150..600);
        actix_rt::time::sleep(Duration::from_millis(pause)).await;
        running.kill();
        for shopper in shoppers {
            shopper.await.expect("the shopper task ends");
        }
        server = Some(Server::start(&database, port).await);
    }
    let server = server.unwrap_or_else(|| unreachable!());

    // Retry every order whose answer was lost; the key makes it the same order.
    let unanswered = ledger.lock().expect("ledger").unanswered();
    for (key, product, quantity) in unanswered {
        let order_id = place(&client, &server.base, (&key, &product, quantity))
            .await
            .expect("the retry is answered");
        ledger.lock().expect("ledger").accept(&key, order_id);
    }

    let order_ids = ledger.lock().expect("ledger").order_ids();
    assert!(
        order_ids.len() > 20,
        "the shoppers placed orders: {}",
        order_ids.len()
    );
    assert_invariants(&client, &server.base, &PRODUCTS, &order_ids).await;
}

#[on_each_backend]
async fn sigterm_lets_in_flight_requests_finish_then_exits() {
    in_flight_request_survives(Signal::SIGTERM).await;
}

#[on_each_backend]
async fn sigint_lets_in_flight_requests_finish_then_exits() {
    in_flight_request_survives(Signal::SIGINT).await;
}

/// A stop signal lets a request in flight finish before the process exits. The request
/// is a charge that takes 0.6 s of simulated payment time; the signal comes once the
/// server has read the whole request.
async fn in_flight_request_survives(stop: Signal) {
    let database = test_database().await;
    let server = Server::start_with(
        &database,
        free_port(),
        &[
            ("MINIMART_PAYMENT_LATENCY_MS", "600"),
            ("MINIMART_PAYMENT_FAILURE_RATE", "0"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let response = put_product_at(&client, &server.base, "slow-pay", "Slow", 100, 5).await;
    assert_eq!(response.status(), StatusCode::OK);
    let order_id = place(&client, &server.base, ("term-1", "slow-pay", 1))
        .await
        .expect("an order");

    // Wait until the order is payable, then pay: the answer takes the payment's time.
    let base = server.base.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let order: Value = client
            .get(format!("{base}/api/orders/{order_id}"))
            .send()
            .await
            .expect("GET order")
            .json()
            .await
            .expect("JSON");
        if order["step"] == "RESERVED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order was never reserved: {order}"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    // The in-flight request is written in full on a plain socket before the
    // signal, so the test knows it is on the server when the signal arrives.
    let body = json!({ "order_id": order_id, "total_amount": 100 }).to_string();
    let address = base.trim_start_matches("http://").to_owned();
    let mut socket = std::net::TcpStream::connect(&address).expect("connect");
    let (client_port, server_port) = (
        socket.local_addr().expect("an address").port(),
        socket.peer_addr().expect("an address").port(),
    );
    socket
        .write_all(
            format!(
                "POST /api/payments HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .expect("the request is sent");
    let answer = std::thread::spawn(move || {
        let mut response = String::new();
        socket.read_to_string(&mut response).map(|_| response)
    });
    until_read_by_server(server_port, client_port).await;

    let pid = Pid::from_raw(i32::try_from(server.child.id()).expect("a pid"));
    kill(pid, stop).expect("the signal is sent");

    let response = answer
        .join()
        .expect("the reader ends")
        .expect("the in-flight request is answered");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the in-flight charge completes: {response}"
    );
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop on {stop}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "a graceful stop exits with success: {exit}");
}

/// Waits until the server has read everything the client sent on the connection
/// from `client_port` to `server_port`: the kernel's receive queue of the
/// server's end (`/proc/net/tcp`, Linux) is empty, so the request is in the
/// app's hands, not in a buffer a stop could drop.
async fn until_read_by_server(server_port: u16, client_port: u16) {
    let (local, remote) = (format!(":{server_port:04X}"), format!(":{client_port:04X}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let unread = table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st tx_queue:rx_queue ...
            let ours = fields.get(1)?.ends_with(&local) && fields.get(2)?.ends_with(&remote);
            let (_, rx) = fields.get(4)?.split_once(':')?;
            ours.then(|| u32::from_str_radix(rx, 16).ok()).flatten()
        });
        if unread == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never read the request"
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}
