//! An order's progress as server-sent events (`GET /orders/{id}/events`).
//!
//! A stream first sends the recorded events the client has not seen (after its
//! `Last-Event-ID`), then the live ones as the saga commits them, each as the
//! rendered steps (`event: step`, `id:` its sequence number) and, at the end, the
//! outcome notification (`event: outcome`); then it ends. When the browser
//! reconnects after the end, the order is terminal and nothing is left to send: it
//! gets `204 No Content`, which tells `EventSource` to stop. A watcher that falls
//! behind the live feed ends its stream too, and catches up from the recorded
//! events on reconnect.
//!
//! The stream hears its own order's events only (see `actors::orders::watchers`).
//! The framing, the `retry:` advice and the keep-alive comments are
//! `actix_web_lab::sse`'s. Its keep-alive ticks every period on a timer of its own,
//! data or not, so nothing pushes it back: a stream is never quiet for longer than
//! a period. `Last-Event-ID` is read here (the crate does not).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Responder, web};
use actix_web_lab::sse;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

use super::pages::{PageError, not_found};
use super::session::Shopper;
use crate::actors::Actors;
use crate::actors::orders::watchers::Watch;
use crate::actors::orders::{ListShopperOrders, WatchOrder};
use crate::domain::{Order, OrderEvent, OrderId};
use crate::views::order::{outcome, steps, toast};

/// A comment at least this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a browser waits before it reconnects a stream that broke off.
const RETRY: Duration = Duration::from_secs(3);

pub(super) async fn order_events(
    req: HttpRequest,
    order_id: web::Path<String>,
    actors: web::Data<Actors>,
) -> Result<HttpResponse, PageError> {
    let unknown = || not_found("no such order");
    let order_id = OrderId::parse(&order_id).map_err(|_| unknown())?;
    let after_seq = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let watch = actors
        .orders
        .send(WatchOrder {
            order_id,
            after_seq,
        })
        .await??
        .ok_or_else(unknown)?;
    if watch.order.status().is_terminal() && watch.missed.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    let feed = Feed::new(watch.order, watch.missed, watch.live, after_seq);
    Ok(respond(feed.frames(), &req))
}

/// The stream: `retry:` first, then the frames, and a keep-alive comment
/// every `keep_alive` on a timer of its own.
fn event_stream<S>(frames: S, keep_alive: Duration) -> sse::Sse<S>
where
    S: Stream<Item = Result<sse::Event, Infallible>> + 'static,
{
    sse::Sse::from_stream(frames)
        .with_keep_alive(keep_alive)
        .with_retry_duration(RETRY)
}

/// The frames' stream as the answer, with the keep-alive and the headers every
/// event stream of the shop has.
fn respond<S>(frames: S, req: &HttpRequest) -> HttpResponse
where
    S: Stream<Item = Result<sse::Event, Infallible>> + 'static,
{
    let mut response = event_stream(frames, KEEP_ALIVE).respond_to(req);
    let headers = response.headers_mut();
    // The crate says `Content-Encoding: identity`; nothing here compresses, and a
    // stream answers without any coding, as before.
    headers.remove(header::CONTENT_ENCODING);
    // nginx, and proxies like it, pass the stream on as it comes.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

/// How many of a shopper's latest orders the shopper's stream follows.
const SHOPPER_ORDERS: u32 = 20;

/// `GET /orders/events`: one stream per shopper, whichever page they are on.
/// It follows each of the shopper's undecided orders and sends an `outcome`
/// event (a toast that links to the order) as each is decided, then `done`
/// when none is left undecided, and ends.
pub(super) async fn shopper_events(
    req: HttpRequest,
    query: web::Query<ShopperEventsQuery>,
    shopper: Shopper,
    actors: web::Data<Actors>,
) -> Result<HttpResponse, PageError> {
    let list = ListShopperOrders {
        shopper: shopper.0,
        limit: SHOPPER_ORDERS,
    };
    let orders = actors.orders.send(list).await??;
    let since = query
        .since
        .and_then(chrono::DateTime::from_timestamp_millis);
    let (decided, pending): (Vec<Order>, Vec<Order>) = (orders.into_iter())
        .filter(|order| Some(order.order_id) != query.except)
        .partition(|order| order.status().is_terminal());
    // Decided after the page was made, before it listened: told now.
    let mut outcomes: VecDeque<Order> = (decided.into_iter().rev())
        .filter(|order| since.is_some_and(|since| order.updated_at >= since))
        .collect();
    let mut undecided = Vec::new();
    for order in pending {
        let watch = WatchOrder {
            order_id: order.order_id,
            after_seq: 0,
        };
        let Some(mut watch) = actors.orders.send(watch).await?? else {
            continue;
        };
        // Decided between the list and the watch: its outcome goes first.
        if let Some(last) = watch.missed.pop() {
            watch.order.step = last.step;
            watch.order.reason = last.reason;
        }
        if watch.order.status().is_terminal() {
            outcomes.push_back(watch.order);
        } else {
            undecided.push((watch.order, watch.live));
        }
    }
    let toasts = ShopperFeed::new(outcomes, undecided).frames();
    Ok(respond(toasts, &req))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct ShopperEventsQuery {
    /// When the page was made, in Unix milliseconds.
    since: Option<i64>,
    /// An order the page shows itself.
    except: Option<OrderId>,
}

/// A shopper's orders as they are decided: their live feeds merged into one.
struct ShopperFeed {
    /// Decided, their toast not yet sent.
    outcomes: VecDeque<Order>,
    /// Undecided, by id.
    orders: HashMap<OrderId, Order>,
    live: futures_util::stream::SelectAll<BoxStream<'static, OrderEvent>>,
    done: bool,
    _watching: crate::meters::GaugeGuard,
}

impl ShopperFeed {
    fn new(outcomes: VecDeque<Order>, undecided: Vec<(Order, Watch)>) -> ShopperFeed {
        let mut orders = HashMap::new();
        let mut live = futures_util::stream::SelectAll::new();
        for (order, watch) in undecided {
            orders.insert(order.order_id, order);
            live.push(
                futures_util::stream::unfold(watch, |mut watch| async move {
                    watch.recv().await.map(|event| (event, watch))
                })
                .boxed(),
            );
        }
        ShopperFeed {
            outcomes,
            orders,
            live,
            done: false,
            _watching: crate::meters::sse_watcher(),
        }
    }

    fn frames(self) -> impl Stream<Item = Result<sse::Event, Infallible>> + 'static {
        futures_util::stream::unfold(self, ShopperFeed::next)
    }

    async fn next(mut self) -> Option<(Result<sse::Event, Infallible>, ShopperFeed)> {
        loop {
            if let Some(order) = self.outcomes.pop_front() {
                let toast = sse::Data::new(toast(&order).into_string()).event("outcome");
                return Some((Ok(toast.into()), self));
            }
            if self.done {
                return None;
            }
            if self.orders.is_empty() {
                self.done = true;
                return Some((Ok(sse::Data::new("").event("done").into()), self));
            }
            // The feeds ended (the shop stops, or a watcher fell behind): the
            // browser connects again and the stream starts over.
            let event = self.live.next().await?;
            if event.step.status().is_terminal()
                && let Some(mut order) = self.orders.remove(&event.order_id)
            {
                order.step = event.step;
                order.reason = event.reason;
                order.updated_at = event.at;
                self.outcomes.push_back(order);
            }
        }
    }
}

/// One order's stream: the recorded events, then the live ones, as frames.
struct Feed {
    order: Order,
    queued: VecDeque<OrderEvent>,
    live: Watch,
    last_seq: u32,
    /// Frames made and not yet sent.
    frames: VecDeque<sse::Event>,
    finished: bool,
    /// Counts the stream in `minimart_sse_watchers` while it is open.
    _watching: crate::meters::GaugeGuard,
}

impl Feed {
    fn new(order: Order, missed: Vec<OrderEvent>, live: Watch, after_seq: u32) -> Feed {
        Feed {
            order,
            queued: missed.into(),
            live,
            last_seq: after_seq,
            frames: VecDeque::new(),
            finished: false,
            _watching: crate::meters::sse_watcher(),
        }
    }

    /// The frames, until the outcome's; or until the live feed ends (a watcher
    /// that fell behind, or the shop stopping), when the client reconnects.
    fn frames(self) -> impl Stream<Item = Result<sse::Event, Infallible>> + 'static {
        futures_util::stream::unfold(self, Feed::next)
    }

    async fn next(mut self) -> Option<(Result<sse::Event, Infallible>, Feed)> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some((Ok(frame), self));
            }
            if self.finished {
                return None;
            }
            match self.queued.pop_front() {
                // Sent already, from the recorded events.
                Some(event) if event.seq <= self.last_seq => {}
                Some(event) => self.apply(event),
                None => {
                    let event = self.live.recv().await?;
                    self.queued.push_back(event);
                }
            }
        }
    }

    /// Makes the frames for one event; marks the feed finished at a terminal step.
    fn apply(&mut self, event: OrderEvent) {
        self.last_seq = event.seq;
        self.order.step = event.step;
        self.order.reason = event.reason;
        self.order.updated_at = event.at;
        let id = event.seq.to_string();
        let steps = sse::Data::new(steps(self.order.step).into_string()).event("step");
        if !self.order.status().is_terminal() {
            self.frames.push_back(steps.id(id).into());
            return;
        }
        self.finished = true;
        // The id goes on the last frame: a reconnect before it re-sends both.
        let outcome = sse::Data::new(outcome(&self.order).into_string())
            .event("outcome")
            .id(id);
        self.frames.extend([steps.into(), outcome.into()]);
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::time::Instant;

    use actix_web::body::{self, MessageBody};
    use actix_web::web::Bytes;
    use chrono::Utc;
    use futures_util::future::poll_fn;
    use tokio::sync::broadcast;

    use super::*;
    use crate::actors::orders::watchers::Watchers;
    use crate::domain::{Money, OrderLine, OrderStep, Price, ProductId, ProductName, Quantity};

    fn order(order_id: OrderId, step: OrderStep) -> Order {
        Order {
            order_id,
            lines: vec![OrderLine {
                product_id: ProductId::parse("tea").unwrap(),
                product_name: ProductName::parse("Tea").unwrap(),
                quantity: Quantity::parse(2).unwrap(),
                unit_price: Price::parse(350).unwrap(),
            }],
            payment_method: None,
            total_amount: Money::from_cents(700),
            step,
            reason: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn event(order_id: OrderId, seq: u32, step: OrderStep) -> OrderEvent {
        OrderEvent {
            order_id,
            seq,
            step,
            reason: None,
            at: Utc::now(),
        }
    }

    async fn next_chunk(
        body: &mut Pin<Box<impl MessageBody<Error: std::fmt::Debug>>>,
    ) -> Option<Bytes> {
        let chunk = tokio::time::timeout(
            Duration::from_secs(5),
            poll_fn(|cx| body.as_mut().poll_next(cx)),
        )
        .await
        .expect("the stream moves");
        chunk.map(|chunk| chunk.unwrap())
    }

    #[actix_rt::test]
    async fn steps_then_the_outcome_then_the_end() {
        let watchers = Watchers::default();
        let order_id = OrderId::generate();
        let missed = vec![
            event(order_id, 1, OrderStep::Placed),
            event(order_id, 2, OrderStep::Reserved),
        ];
        let live = watchers.watch(order_id);
        let feed = Feed::new(order(order_id, OrderStep::Reserved), missed, live, 1);
        // The live feed repeats an event the recorded ones held: it is sent once.
        watchers.deliver(&event(order_id, 2, OrderStep::Reserved));
        watchers.deliver(&event(order_id, 3, OrderStep::Confirmed));

        let text = body::to_bytes(event_stream(feed.frames(), Duration::from_secs(60)))
            .await
            .unwrap();

        let text = std::str::from_utf8(&text)
            .unwrap()
            .replace(": keep-alive\n\n", "");
        let confirmed = order(order_id, OrderStep::Confirmed);
        let expected = format!(
            "retry: 3000\n\n\
             id: 2\nevent: step\ndata: {}\n\n\
             event: step\ndata: {}\n\n\
             id: 3\nevent: outcome\ndata: {}\n\n",
            steps(OrderStep::Reserved).into_string(),
            steps(OrderStep::Confirmed).into_string(),
            outcome(&confirmed).into_string(),
        );
        assert_eq!(text, expected);
        assert!(text.contains("Order confirmed"), "{text}");
        assert_eq!(watchers.count(), 0, "the ended stream's watcher is gone");
    }

    #[actix_rt::test]
    async fn keep_alives_come_on_time_while_other_orders_move() {
        const PERIOD: Duration = Duration::from_millis(100);
        let watchers = Watchers::default();
        let (bus, _) = broadcast::channel(4096);
        actix_rt::spawn(watchers.clone().dispatch(bus.subscribe()));
        let (quiet, busy) = (OrderId::generate(), OrderId::generate());
        let feed = Feed::new(
            order(quiet, OrderStep::Reserved),
            Vec::new(),
            watchers.watch(quiet),
            2,
        );
        // Another order's events, every 5 ms, all along.
        let traffic = {
            let bus = bus.clone();
            actix_rt::spawn(async move {
                for seq in 1.. {
                    let _ = bus.send(event(busy, seq, OrderStep::Reserved));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let mut body = Box::pin(event_stream(feed.frames(), PERIOD));

        assert_eq!(next_chunk(&mut body).await.unwrap(), "retry: 3000\n\n");
        let mut last = Instant::now();
        let mut keep_alives = 0;
        while keep_alives < 5 {
            let chunk = tokio::time::timeout(PERIOD * 20, next_chunk(&mut body))
                .await
                .expect("a keep-alive, however busy the other orders")
                .unwrap();
            assert_eq!(
                chunk, ": keep-alive\n\n",
                "nothing else for the quiet order"
            );
            // Generous for a loaded machine: what matters is that other orders'
            // events (every 5 ms) never hold a keep-alive back for long.
            let gap = last.elapsed();
            assert!(
                gap < PERIOD * 10,
                "a keep-alive {gap:?} after the last frame (period {PERIOD:?})"
            );
            last = Instant::now();
            keep_alives += 1;
        }

        bus.send(event(quiet, 3, OrderStep::Confirmed)).unwrap();
        let mut rest = String::new();
        while let Some(chunk) = next_chunk(&mut body).await {
            rest.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(rest.contains("id: 3\nevent: outcome"), "{rest}");
        assert_eq!(watchers.count(), 0, "the ended stream's watcher is gone");
        traffic.abort();
    }
}
