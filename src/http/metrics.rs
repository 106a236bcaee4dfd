//! `GET /metrics` for Prometheus, and the middleware that times every request.
//! Prometheus scrapes each instance on its own address; the gateway does not
//! pass `/metrics` to the public.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use metrics::{gauge, histogram};

use crate::actors::Actors;
use crate::meters;

/// The process's metrics in Prometheus' text format.
pub(super) async fn metrics(actors: web::Data<Actors>) -> HttpResponse {
    let Some(handle) = meters::install() else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let (active, idle) = actors.read_pool_connections();
    gauge!(meters::STORE_POOL_CONNECTIONS, "state" => "active").set(active);
    gauge!(meters::STORE_POOL_CONNECTIONS, "state" => "idle").set(idle);
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// Times the request into `minimart_http_request_duration_seconds{method,
/// route, status}`, where `route` is the route's pattern (never the path, whose
/// ids would make a series per order) or `unmatched`.
pub(super) async fn timed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let result = next.call(req).await;
    let (route, status) = match &result {
        Ok(response) => (
            response.request().match_pattern(),
            response.status().as_u16(),
        ),
        Err(error) => (None, error.as_response_error().status_code().as_u16()),
    };
    let elapsed = started.elapsed();
    if meters::installed() {
        let route = route.as_deref().unwrap_or(meters::UNMATCHED_ROUTE);
        HISTOGRAMS.with_borrow_mut(|histograms| {
            if !histograms.contains_key(route) {
                histograms.insert(route.to_owned(), HashMap::new());
            }
            let Some(by_method) = histograms.get_mut(route) else {
                return;
            };
            by_method
                .entry((method, status))
                .or_insert_with(|| {
                    histogram!(
                        meters::HTTP_DURATION,
                        "method" => method,
                        "route" => route.to_owned(),
                        "status" => status.to_string()
                    )
                })
                .record(elapsed);
        });
    }
    result
}

/// Each worker thread's histograms by route, then method and status, so that a
/// request costs no lookup in the recorder's registry. There are few: routes
/// are the route table's patterns (and `unmatched`), methods and statuses few.
type ByRoute = HashMap<String, HashMap<(&'static str, u16), metrics::Histogram>>;

thread_local! {
    static HISTOGRAMS: RefCell<ByRoute> = RefCell::new(HashMap::new());
}

/// The method as a label; any method the app does not know is `other`, so that
/// a client cannot make new series at will.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
