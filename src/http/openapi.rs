//! The OpenAPI 3.1 document of the JSON API, served at `GET /api/openapi.json`,
//! and its page for people at `GET /api/docs` (Swagger UI, vendored).
//! The document is generated from the handlers' `#[utoipa::path]` attributes
//! (api.rs), the request and answer types, and the schemas below for the
//! domain's values, which take their limits from the domain's own constants.
//! The domain itself knows nothing of OpenAPI.
//!
//! tests/api/openapi.rs checks the document against the route table
//! (`http::api_routes`) and against real answers.

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::api;
use super::error::Problem;
use crate::domain::{
    Money, OrderId, OrderStatus, OrderStep, PaymentId, PaymentStatus, Price, ProductId,
    ProductName, Quantity, Stock,
};
use crate::views::api_docs::api_docs;

/// The name of the admin's bearer scheme in the document (and in the
/// `security` of `api::upsert_product`, which must spell it out).
pub(super) const ADMIN_TOKEN: &str = "admin_token";

/// The media type of every refusal.
pub(super) const PROBLEM_JSON: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "minimart API",
        description = "The JSON API of minimart. Every refusal is an RFC 9457 problem \
            (`application/problem+json`, schema `Problem`). Every GET also answers HEAD, \
            with the same status and headers and no body. A method a path does not list \
            is refused with 405 and an `Allow` header."
    ),
    paths(
        document,
        api::list_products,
        api::get_product,
        api::upsert_product,
        api::place_order,
        api::get_order,
        api::list_payments,
        api::charge,
        api::get_payment,
    ),
    components(schemas(Problem)),
    modifiers(&AdminBearer),
    tags(
        (name = "products", description = "The catalog"),
        (name = "orders", description = "Orders and their sagas"),
        (name = "payments", description = "Charges against orders"),
        (name = "meta", description = "This document"),
    )
)]
pub(super) struct ApiDoc;

/// Adds the admin's bearer scheme, which `POST /api/products/{product_id}` requires.
struct AdminBearer;

impl Modify for AdminBearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::new);
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (MINIMART_ADMIN_TOKEN) as `Authorization: Bearer <token>`; \
                         the scheme's name in any case. Too many wrong tokens from one address \
                         lock it out for a while (429 with Retry-After).",
                    ))
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
    )
)]
pub(super) async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The document's page for people. A page, not an operation of the API: it is
/// not in the document.
pub(super) async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(api_docs("/api/openapi.json").into_string())
}

// The domain's values, as they are on the wire.

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
}

fn uuid(description: &str) -> RefOr<Schema> {
    string()
        .format(Some(SchemaFormat::Custom("uuid".to_owned())))
        .description(Some(description))
        .examples(["01936d5e-8a3c-7b2e-9f41-2c5d8e7a9b10"])
        .into()
}

/// The wire names of an enum's values, as serde writes them.
fn names<T: Serialize>(values: &[T]) -> Vec<Value> {
    values
        .iter()
        .filter_map(|value| serde_json::to_value(value).ok())
        .collect()
}

impl PartialSchema for ProductId {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "A client-chosen product key: 1 to 64 ASCII letters, digits, `-` or `_`.",
            ))
            .min_length(Some(1))
            .max_length(Some(ProductId::MAX_LEN))
            .pattern(Some(format!("^[A-Za-z0-9_-]{{1,{}}}$", ProductId::MAX_LEN)))
            .examples(["espresso-beans"])
            .into()
    }
}
impl ToSchema for ProductId {}

impl PartialSchema for ProductName {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "A product's display name, trimmed: 1 to 200 characters in any script, with a \
                 visible one, and no control or Unicode format (Cf) characters.",
            ))
            .min_length(Some(1))
            .max_length(Some(ProductName::MAX_CHARS))
            .examples(["Espresso beans, 1 kg"])
            .into()
    }
}
impl ToSchema for ProductName {}

impl PartialSchema for Price {
    fn schema() -> RefOr<Schema> {
        integer()
            .description(Some(
                "A unit price in cents: at least 1 cent, at most $1,000,000.",
            ))
            .minimum(Some(1))
            .maximum(Some(Price::MAX_CENTS))
            .examples([1250])
            .into()
    }
}
impl ToSchema for Price {}

impl PartialSchema for Stock {
    fn schema() -> RefOr<Schema> {
        integer()
            .description(Some(
                "Units on hand. A client sets 0 to 1,000,000,000; releases of reserved stock \
                 may take a stock past the maximum.",
            ))
            .minimum(Some(0))
            .examples([40])
            .into()
    }
}
impl ToSchema for Stock {}

impl PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        integer()
            .description(Some("How many units one order buys."))
            .minimum(Some(1))
            .maximum(Some(Quantity::MAX))
            .examples([2])
            .into()
    }
}
impl ToSchema for Quantity {}

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        integer()
            .description(Some("An amount in cents (never a float)."))
            .examples([2500])
            .into()
    }
}
impl ToSchema for Money {}

impl PartialSchema for OrderId {
    fn schema() -> RefOr<Schema> {
        uuid("An order's id: a UUID (version 7).")
    }
}
impl ToSchema for OrderId {}

impl PartialSchema for PaymentId {
    fn schema() -> RefOr<Schema> {
        uuid("A payment's id: a UUID (version 7).")
    }
}
impl ToSchema for PaymentId {}

impl PartialSchema for OrderStatus {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "An order's public status: PENDING until its saga decides, then one terminal \
                 status that never changes.",
            ))
            .enum_values(Some(names(&OrderStatus::ALL)))
            .into()
    }
}
impl ToSchema for OrderStatus {}

impl PartialSchema for OrderStep {
    fn schema() -> RefOr<Schema> {
        // A step added to the domain does not compile here until it is listed.
        let _listed = |step: OrderStep| match step {
            OrderStep::Placed
            | OrderStep::Reserved
            | OrderStep::Confirmed
            | OrderStep::Rejected
            | OrderStep::PaymentFailed => (),
        };
        string()
            .description(Some("Where an order's saga stands."))
            .enum_values(Some(names(&[
                OrderStep::Placed,
                OrderStep::Reserved,
                OrderStep::Confirmed,
                OrderStep::Rejected,
                OrderStep::PaymentFailed,
            ])))
            .into()
    }
}
impl ToSchema for OrderStep {}

impl PartialSchema for PaymentStatus {
    fn schema() -> RefOr<Schema> {
        let _listed = |status: PaymentStatus| match status {
            PaymentStatus::Succeeded | PaymentStatus::Declined => (),
        };
        string()
            .description(Some(
                "A payment's outcome; a decline is a normal answer, not an error.",
            ))
            .enum_values(Some(names(&[
                PaymentStatus::Succeeded,
                PaymentStatus::Declined,
            ])))
            .into()
    }
}
impl ToSchema for PaymentStatus {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_domain_schema() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1.")),
            "{}",
            document["openapi"]
        );
        let schemas = &document["components"]["schemas"];
        for name in [
            "Problem",
            "ProductId",
            "ProductName",
            "Price",
            "Stock",
            "Quantity",
            "Money",
            "OrderId",
            "PaymentId",
            "OrderStatus",
            "OrderStep",
            "PaymentStatus",
        ] {
            assert!(schemas[name].is_object(), "no schema {name}: {schemas}");
        }
        assert_eq!(
            schemas["OrderStep"]["enum"],
            serde_json::json!([
                "PLACED",
                "RESERVED",
                "CONFIRMED",
                "REJECTED",
                "PAYMENT_FAILED"
            ])
        );
    }
}
