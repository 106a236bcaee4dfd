//! The HTTP layer: one route table, the server, and the error mapping.

mod api;
pub mod error;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, Resource, web};

use crate::actors::Actors;
use crate::config::AdminToken;
use error::ApiError;

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
    admin_token: AdminToken,
    settings: ServerSettings,
) -> std::io::Result<Server> {
    let actors = web::Data::new(actors);
    let admin_token = web::Data::new(admin_token);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(actors.clone())
            .app_data(admin_token.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(BODY_LIMIT)
                    .error_handler(error::json_error),
            )
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .configure(routes)
    })
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
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
        .default_service(web::to(not_found));
}

/// A resource whose unsupported methods get a problem+json 405.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no resource at {}", req.path())))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(req.method().to_string()))
}
