//! An order's progress as server-sent events (`GET /orders/{id}/events`).
//!
//! A stream first sends the recorded events the client has not seen (after its
//! `Last-Event-ID`), then the live ones as the saga commits them, each as the
//! rendered steps (`event: step`) and, at the end, the outcome notification
//! (`event: outcome`); then it ends. When the browser reconnects after the end,
//! the order is terminal and nothing is left to send: it gets `204 No Content`,
//! which tells `EventSource` to stop. A watcher that falls behind the live feed
//! ends its stream too, and catches up from the recorded events on reconnect.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::broadcast::{self, error::RecvError};

use super::error::ApiError;
use super::pages::PageError;
use crate::actors::Actors;
use crate::actors::orders::WatchOrder;
use crate::domain::{Order, OrderEvent, OrderId};
use crate::views::order::{OrderView, outcome, steps};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn order_events(
    req: HttpRequest,
    order_id: web::Path<String>,
    actors: web::Data<Actors>,
) -> Result<HttpResponse, PageError> {
    let unknown = || PageError(ApiError::NotFound("no such order".to_owned()));
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
    let product_name = actors
        .inventory
        .catalog
        .product(&watch.order.product_id)
        .await?
        .map(|product| product.product_name.as_str().to_owned());
    let feed = Feed {
        order: watch.order,
        product_name,
        queued: watch.missed.into(),
        live: watch.live,
        last_seq: after_seq,
        finished: false,
        _watching: crate::meters::sse_watcher(),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::stream::unfold(feed, Feed::next)))
}

struct Feed {
    order: Order,
    product_name: Option<String>,
    queued: VecDeque<OrderEvent>,
    live: broadcast::Receiver<OrderEvent>,
    last_seq: u32,
    finished: bool,
    /// Counts the stream in `minimart_sse_watchers` while it is open.
    _watching: crate::meters::GaugeGuard,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Feed)> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(event) = self.queued.pop_front() {
                if event.seq <= self.last_seq {
                    continue; // already sent, from the recorded events
                }
                let frame = self.apply(event);
                return Some((Ok(frame), self));
            }
            tokio::select! {
                received = self.live.recv() => match received {
                    Ok(event) if event.order_id == self.order.order_id => self.queued.push_back(event),
                    Ok(_) => {}
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return None,
                },
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
            }
        }
    }

    /// The frames for one event; marks the feed finished at a terminal step.
    fn apply(&mut self, event: OrderEvent) -> Bytes {
        self.last_seq = event.seq;
        self.order.step = event.step;
        self.order.reason = event.reason;
        self.order.updated_at = event.at;
        let id = event.seq.to_string();
        let steps = steps(self.order.step).into_string();
        if !self.order.status().is_terminal() {
            return Bytes::from(frame(Some(&id), "step", &steps));
        }
        self.finished = true;
        let view = OrderView {
            order: &self.order,
            product_name: self.product_name.as_deref(),
        };
        // The id goes on the last frame: a reconnect before it re-sends both.
        let mut frames = frame(None, "step", &steps);
        frames.push_str(&frame(Some(&id), "outcome", &outcome(&view).into_string()));
        Bytes::from(frames)
    }
}

/// One server-sent event; every line of `data` gets its own `data:` field.
fn frame(id: Option<&str>, event: &str, data: &str) -> String {
    let mut text = String::new();
    if let Some(id) = id {
        text.push_str(&format!("id: {id}\n"));
    }
    text.push_str(&format!("event: {event}\n"));
    for line in data.lines() {
        text.push_str(&format!("data: {line}\n"));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::frame;

    #[test]
    fn multi_line_data_is_one_field_per_line() {
        assert_eq!(
            frame(Some("3"), "step", "<a>\n<b>"),
            "id: 3\nevent: step\ndata: <a>\ndata: <b>\n\n"
        );
        assert_eq!(frame(None, "outcome", "x"), "event: outcome\ndata: x\n\n");
    }
}
