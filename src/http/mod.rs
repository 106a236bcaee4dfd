//! The HTTP layer: one route table, the server, and the error mapping.

mod admin;
mod api;
pub mod error;
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
    let actors = web::Data::new(actors);
    let admin = web::Data::new(admin);
    let site = web::Data::new(site);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(actors.clone())
            .app_data(admin.clone())
            .app_data(site.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(BODY_LIMIT)
                    .error_handler(error::json_error),
            )
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

/// Every route the app serves.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").get(api::healthz))
        .service(resource("/api/products").get(api::list_products))
        .service(
            resource("/api/products/{product_id}")
                .get(api::get_product)
                .post(api::upsert_product),
        )
        .service(resource("/api/orders").post(api::place_order))
        .service(resource("/api/orders/{order_id}").get(api::get_order))
        .service(
            resource("/api/payments")
                .get(api::list_payments)
                .post(api::charge),
        )
        .service(resource("/api/payments/{payment_id}").get(api::get_payment))
        // The storefront.
        .service(page("/").get(pages::catalog))
        .service(page("/products/{product_id}").get(pages::product))
        .service(page("/orders").get(pages::my_orders).post(pages::buy))
        .service(page("/orders/{order_id}").get(pages::order))
        .service(page("/orders/{order_id}/events").get(sse::order_events))
        .service(page("/fragments/availability").get(pages::availability))
        .service(page("/admin").get(admin::dashboard))
        .service(page("/admin/sign-in").post(admin::sign_in))
        .service(page("/admin/sign-out").post(admin::sign_out))
        .service(page("/admin/products").post(admin::create_product))
        .service(
            page("/admin/products/{product_id}")
                .get(admin::edit_product)
                .post(admin::update_product),
        )
        .service(web::resource("/static/{file}").get(pages::asset))
        .default_service(web::to(pages::not_found_page));
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

/// A resource whose unsupported methods get a problem+json 405.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// A page whose unsupported methods get an HTML 405.
fn page(path: &str) -> Resource {
    web::resource(path).default_service(web::to(page_method_not_allowed))
}

async fn page_method_not_allowed(req: HttpRequest) -> Result<HttpResponse, pages::PageError> {
    Err(pages::PageError(ApiError::MethodNotAllowed(
        req.method().to_string(),
    )))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(req.method().to_string()))
}
