//! The HTTP layer: one route table, the server, and the error mapping.

mod admin;
mod api;
mod cart;
pub mod error;
mod json;
mod metrics;
mod openapi;
mod pages;
mod request_id;
mod session;
mod sse;
mod throttle;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, Resource, web};

use crate::actors::Actors;
use error::ApiError;
pub use session::{AdminAuth, Site};

/// The largest JSON body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;

pub struct ServerSettings {
    pub workers: Option<usize>,
    pub shutdown_timeout: Duration,
}

/// Builds the server on a listener the caller bound (tests bind port 0).
pub fn serve(
    listener: TcpListener,
    actors: Actors,
    admin: AdminAuth,
    site: Site,
    settings: ServerSettings,
) -> std::io::Result<Server> {
    crate::meters::install();
    let actors = web::Data::new(actors);
    let admin = web::Data::new(admin);
    let site = web::Data::new(site);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(actors.clone())
            .app_data(admin.clone())
            .app_data(site.clone())
            // The body extractors' limit (JSON bodies: `json::Json`).
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(
                web::FormConfig::default()
                    .limit(BODY_LIMIT)
                    .error_handler(|error, _| {
                        pages::PageError(ApiError::BadRequest(format!(
                            "the form could not be read: {error}"
                        )))
                        .into()
                    }),
            )
            .wrap(from_fn(session::shopper_cookie))
            .wrap(from_fn(session::no_store))
            .wrap(security_headers())
            // Outermost: the other middleware's log lines carry the id too.
            .wrap(from_fn(request_id::request_id))
            // Around everything: a request's time includes every middleware's.
            .wrap(from_fn(metrics::timed))
            .configure(routes)
    })
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
    // actix-server treats SIGINT as a forced stop; start-up installs handlers
    // that stop gracefully on both SIGINT and SIGTERM instead.
    .disable_signals()
    .listen(listener)?;
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// Every route the app serves: `resource` for programs (refusals are
/// problem+json), `page` for people (refusals are HTML pages).
pub fn routes(cfg: &mut web::ServiceConfig) {
    for endpoint in endpoints() {
        cfg.service(endpoint);
    }
    cfg.default_service(web::to(pages::not_found_page));
}

/// The route table, in the order in which paths are matched.
fn endpoints() -> Vec<Endpoint> {
    vec![
        resource("/healthz").get(api::healthz),
        resource("/readyz").get(api::readyz),
        // Prometheus scrapes each instance here; the gateway hides it.
        resource("/metrics").get(metrics::metrics),
        resource("/api/openapi.json").get(openapi::document),
        // The document's page for people: HTML, so not in the document.
        page("/api/docs").get(openapi::docs),
        resource("/api/products").get(api::list_products),
        resource("/api/products/{product_id}")
            .get(api::get_product)
            .post(api::upsert_product),
        resource("/api/orders").post(api::place_order),
        resource("/api/orders/{order_id}").get(api::get_order),
        resource("/api/payments")
            .get(api::list_payments)
            .post(api::charge),
        resource("/api/payments/{payment_id}").get(api::get_payment),
        // The storefront.
        page("/").get(pages::catalog),
        page("/products/{product_id}").get(pages::product),
        page("/cart").get(cart::view).post(cart::add),
        page("/cart/{product_id}").post(cart::change),
        page("/checkout")
            .get(cart::checkout_page)
            .post(cart::checkout),
        page("/orders").get(pages::my_orders).post(pages::buy),
        // Before "/orders/{order_id}", which would take it for an order.
        page("/orders/events").get(sse::shopper_events),
        page("/orders/{order_id}").get(pages::order),
        page("/orders/{order_id}/cart").post(cart::again),
        page("/orders/{order_id}/events").get(sse::order_events),
        page("/fragments/availability").get(pages::availability),
        page("/admin").get(admin::dashboard),
        page("/admin/sign-in").post(admin::sign_in),
        page("/admin/sign-out").post(admin::sign_out),
        page("/admin/products").post(admin::create_product),
        page("/admin/orders").get(admin::orders),
        page("/admin/orders/{order_id}").get(admin::order),
        page("/admin/orders/{order_id}/retry").post(admin::retry_order),
        page("/admin/products/{product_id}")
            .get(admin::edit_product)
            .post(admin::update_product),
        page("/static/{file}").get(pages::asset),
    ]
}

/// Each path of the route table under `/api/` with the methods it answers
/// (HEAD included, for each GET), as the 405s' `Allow` header lists them. The
/// OpenAPI document (`GET /api/openapi.json`) is checked against it.
pub fn api_routes() -> Vec<(&'static str, Vec<Method>)> {
    endpoints()
        .into_iter()
        .filter(|endpoint| endpoint.path.starts_with("/api/"))
        .map(|endpoint| (endpoint.path, endpoint.methods))
        .collect()
}

/// The same headers on every answer. Scripts and styles come only from this
/// origin; nothing may frame the shop.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("X-Frame-Options", "DENY"))
}

// The route table's builder and what it installs. (Its imports are kept here,
// apart from those of `serve`.)
use std::convert::Infallible;

use actix_web::body::{BodySize, BodyStream, BoxBody, MessageBody};
use actix_web::dev::{AppService, HttpServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{FromRequest, Handler, Responder, Route};
use error::ErrorFormat;

/// An API resource: its refusals are problem+json.
fn resource(path: &'static str) -> Endpoint {
    Endpoint::new(path, ErrorFormat::Problem)
}

/// A page: its refusals are HTML pages.
fn page(path: &'static str) -> Endpoint {
    Endpoint::new(path, ErrorFormat::Page)
}

/// One path of the route table and its handlers by method. Any other method gets
/// a 405 whose `Allow` header lists the methods given here, so that the header
/// is the table. A GET handler answers HEAD too.
struct Endpoint {
    path: &'static str,
    resource: Resource,
    format: ErrorFormat,
    methods: Vec<Method>,
}

impl Endpoint {
    fn new(path: &'static str, format: ErrorFormat) -> Endpoint {
        Endpoint {
            path,
            // Extractors' refusals (error.rs) look the format up here.
            resource: web::resource(path).app_data(format),
            format,
            methods: Vec::new(),
        }
    }

    /// GET, and HEAD by the same handler: actix-http sends a HEAD answer's
    /// status and headers without its body.
    fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let head = web::head()
            .to(handler.clone())
            .wrap(from_fn(end_streams_on_head));
        self.route(web::get().to(handler), Method::GET)
            .route(head, Method::HEAD)
    }

    fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(web::post().to(handler), Method::POST)
    }

    fn route(mut self, route: Route, method: Method) -> Self {
        self.resource = self.resource.route(route);
        self.methods.push(method);
        self
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        let Endpoint {
            path: _,
            resource,
            format,
            methods,
        } = self;
        let method_not_allowed = move |req: HttpRequest| {
            let error = ApiError::MethodNotAllowed {
                method: req.method().clone(),
                allow: methods.clone(),
            };
            async move { Err::<HttpResponse, _>(format.error(error)) }
        };
        resource
            .default_service(web::to(method_not_allowed))
            .register(config);
    }
}

/// actix-http writes no body for HEAD but still runs a streamed body to its
/// end before the connection may serve its next request, and an order's event
/// stream lasts as long as its saga. A HEAD answer's stream is dropped for one
/// that ends at once; the headers stay those of GET.
async fn end_streams_on_head(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?.map_into_boxed_body();
    if response.response().body().size() != BodySize::Stream {
        return Ok(response);
    }
    Ok(response.map_body(|_, _| {
        BoxBody::new(BodyStream::new(futures_util::stream::empty::<
            Result<Bytes, Infallible>,
        >()))
    }))
}
