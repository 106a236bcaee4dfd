//! The JSON API. Each handler parses the request into domain types, sends one
//! message, and renders the answer. Catalog reads are the exception that proves
//! the rule: they read the Inventory actor's published catalog (its snapshot, or
//! the database when other instances share it) instead of its mailbox, so
//! browsing never queues behind orders.

use std::fmt::Display;
use std::future::{Ready, ready};

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::json::Json;
use super::openapi::PROBLEM_JSON;
use super::request_id;
use super::session::AdminAuth;
use crate::actors::Actors;
use crate::actors::inventory::UpsertProduct;
use crate::actors::orders::{OrderError, PlaceOrder};
use crate::actors::payment::{Charge, GetPayment, ListPayments};
use crate::domain::{
    Card, CardBrand, CardNumber, Cvc, Expiry, IdempotencyKey, Item, Items, Money, Order, OrderId,
    OrderStatus, OrderStep, ParseError, Payment, PaymentId, PaymentStatus, Price, Product,
    ProductId, ProductName, Quantity, Stock,
};

type Reply = Result<HttpResponse, ApiError>;

/// The `404` for a thing looked up by its id.
fn does_not_exist(what: &str, id: impl Display) -> ApiError {
    ApiError::NotFound(format!("{what} {id} does not exist"))
}

/// The process answers: for a liveness probe.
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The process can serve: its database answers (and was migrated before the
/// server started). For a readiness probe and a load balancer.
pub(super) async fn readyz(actors: web::Data<Actors>) -> Reply {
    actors
        .ready()
        .await
        .map_err(|error| ApiError::Unavailable(Box::new(error)))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

// Products.

/// A product's fields, as the admin sets them.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct ProductBody {
    product_name: ProductName,
    price: Price,
    /// Units on hand: what an admin may set (`Stock::MAX` at most).
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000, example = 40)]
    stock: Stock,
}

/// A product as the catalog shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Product)]
pub(super) struct ProductView {
    product_id: ProductId,
    product_name: ProductName,
    price: Price,
    stock: Stock,
}

impl From<Product> for ProductView {
    fn from(product: Product) -> Self {
        ProductView {
            product_id: product.product_id,
            product_name: product.product_name,
            price: product.price,
            stock: product.stock,
        }
    }
}

/// Creates the product or replaces its fields.
#[utoipa::path(
    post,
    path = "/api/products/{product_id}",
    tag = "products",
    params(("product_id" = ProductId, Path, description = "The product's key")),
    request_body(content = ProductBody, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The product as stored", body = ProductView),
        (status = 400, description = "A malformed product_id or body that is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "No valid admin bearer token", body = Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "The body is larger than 16 KiB", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "A field is refused (`field` names it)", body = Problem, content_type = PROBLEM_JSON),
        (status = 429, description = "Too many wrong tokens from this address", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds until it may try again"))),
        (status = 503, description = "The service is temporarily unavailable", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(super) async fn upsert_product(
    _: Admin,
    product_id: web::Path<ProductId>,
    body: Json<ProductBody>,
    actors: web::Data<Actors>,
) -> Reply {
    let ProductBody {
        product_name,
        price,
        stock,
    } = body.0;
    let product = actors
        .inventory
        .addr
        .send(UpsertProduct(Product {
            product_id: product_id.into_inner(),
            product_name,
            price,
            stock,
        }))
        .await??;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}

/// One product.
#[utoipa::path(
    get,
    path = "/api/products/{product_id}",
    tag = "products",
    params(("product_id" = ProductId, Path, description = "The product's key")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 400, description = "A malformed product_id", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such product", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The service is temporarily unavailable", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(super) async fn get_product(
    product_id: web::Path<ProductId>,
    actors: web::Data<Actors>,
) -> Reply {
    let product = (actors.inventory.catalog.product(&product_id).await?)
        .ok_or_else(|| does_not_exist("product", &product_id))?;
    Ok(HttpResponse::Ok().json(ProductView::from(product)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// The `next_after` of the page before; the first page without it.
    after: Option<ProductId>,
    /// How many products a page holds: 1 to 500, 50 without it.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u16>,
}

/// A page of the catalog, in product_id order.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ProductPage {
    products: Vec<ProductView>,
    /// Pass as `after` to get the next page; absent on the last page.
    next_after: Option<ProductId>,
}

const DEFAULT_PAGE: usize = 50;
const LARGEST_PAGE: usize = 500;

/// The catalog, a page at a time.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = "products",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 400, description = "A bad `after` or `limit`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The service is temporarily unavailable", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(super) async fn list_products(
    query: web::Query<PageQuery>,
    actors: web::Data<Actors>,
) -> Reply {
    let limit = match query.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=LARGEST_PAGE).contains(&usize::from(n)) => usize::from(n),
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {LARGEST_PAGE}"
            )));
        }
    };
    let page = actors
        .inventory
        .catalog
        .page(query.after.as_ref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(ProductPage {
        products: page.products.into_iter().map(ProductView::from).collect(),
        next_after: page.next_after,
    }))
}

// Orders.

/// What to buy: `items`, or the seed's one `product_id` and `quantity`; and,
/// optionally, the card that pays for it.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct OrderBody {
    /// 1 to 50 lines, each product at most once.
    #[schema(value_type = Option<Vec<ItemBody>>, min_items = 1, max_items = 50)]
    items: Option<Items>,
    /// An order of one line, as the first API had it: read only when there
    /// is no `items`.
    product_id: Option<ProductId>,
    /// With `product_id`, when there is no `items`.
    quantity: Option<Quantity>,
    /// The card to charge. Without it, the simulated provider decides as
    /// `MINIMART_PAYMENT_FAILURE_RATE` says.
    payment: Option<CardBody>,
}

/// One line of an order.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(super) struct ItemBody {
    product_id: ProductId,
    #[schema(value_type = i64, minimum = 1, maximum = 1000)]
    quantity: Quantity,
}

/// A payment card. The number and the CVC are used for this charge and never
/// stored, logged or shown: the order keeps the brand and the last four digits.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct CardBody {
    /// 12 to 19 digits passing the Luhn check; spaces allowed.
    #[schema(value_type = String, example = "4242 4242 4242 4242")]
    card_number: Secret<CardNumber>,
    /// 1 to 12.
    #[schema(example = 12)]
    exp_month: i64,
    /// Four digits; the card is good through the end of its expiry month.
    #[schema(example = 2031)]
    exp_year: i64,
    /// 3 or 4 digits.
    #[schema(value_type = String, example = "123")]
    cvc: Secret<Cvc>,
}

/// A card field that is never echoed: a value that does not parse is refused
/// with the rule alone, whatever its JSON type.
#[derive(Debug)]
pub(super) struct Secret<T>(T);

impl<'de> Deserialize<'de> for Secret<CardNumber> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        secret(deserializer, CardNumber::parse)
    }
}

impl<'de> Deserialize<'de> for Secret<Cvc> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        secret(deserializer, Cvc::parse)
    }
}

fn secret<'de, D, T>(
    deserializer: D,
    parse: fn(&str) -> Result<T, ParseError>,
) -> Result<Secret<T>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(raw) => parse(&raw).map(Secret),
        // Checked with the rule's own message, never the value's.
        _ => parse("").map(Secret),
    }
    .map_err(serde::de::Error::custom)
}

impl OrderBody {
    /// The items, from either shape, and the card, valid today.
    fn parse(self) -> Result<(Items, Option<Card>), ApiError> {
        let invalid = |field: &str, detail: String| ApiError::InvalidField {
            field: Some(field.to_owned()),
            detail,
        };
        let items = match (self.items, self.product_id, self.quantity) {
            // The first API's fields are read only without `items`.
            (Some(items), ..) => items,
            (None, Some(product_id), Some(quantity)) => Items::one(Item {
                product_id,
                quantity,
            }),
            (None, Some(_), None) => {
                return Err(invalid("quantity", "missing field `quantity`".to_owned()));
            }
            (None, None, Some(_)) => {
                return Err(invalid(
                    "product_id",
                    "missing field `product_id`".to_owned(),
                ));
            }
            (None, None, None) => return Err(invalid("items", "missing field `items`".to_owned())),
        };
        let card = match self.payment {
            None => None,
            Some(card) => {
                let today = Utc::now().date_naive();
                let expiry = Expiry::parse(card.exp_month, card.exp_year, today)
                    .map_err(|(field, error)| invalid(&format!("payment.{field}"), error.0))?;
                Some(Card {
                    number: card.card_number.0,
                    expiry,
                    cvc: card.cvc.0,
                })
            }
        };
        Ok((items, card))
    }
}

/// An order taken: its saga goes on; `GET` its `Location` for the outcome.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OrderAccepted {
    order_id: OrderId,
    status: OrderStatus,
}

/// Places an order. The answer comes before the saga ends: the order is PENDING
/// until it is confirmed, rejected (no stock) or its payment fails.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1 to 255 visible ASCII characters. The same key with the same body \
                answers the order placed first (Idempotent-Replayed: true); with another body, 422.",
            min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$"),
    ),
    request_body(content = OrderBody, content_type = "application/json"),
    responses(
        (status = 202, description = "The order is taken; its saga goes on", body = OrderAccepted,
            headers(
                ("Location" = String, description = "The order: `/api/orders/{order_id}`"),
                ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key; absent otherwise"),
            )),
        (status = 400, description = "A body that is not JSON, or a bad Idempotency-Key", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is larger than 16 KiB", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "A field is refused (`field` names it: `items[1].quantity`, `payment.card_number`; \
            an unknown product is `items[N].product_id`, or `product_id` in the one-product body), \
            the total is too large, or the Idempotency-Key was used with another body", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The shop is overloaded (`code: \"overloaded\"`: at its limit of orders in flight, \
            or the order waited in a queue past its deadline) or temporarily unavailable (`code: \"unavailable\"`). \
            An overloaded refusal stored nothing: the same request, with the same Idempotency-Key, may be sent again \
            after `Retry-After`", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait before sending the order again")),
            example = json!({
                "type": "about:blank",
                "title": "Service Unavailable",
                "status": 503,
                "detail": "the shop is at its limit of 1024 orders in flight: retry after 1 s",
                "code": "overloaded"
            })),
    )
)]
pub(super) async fn place_order(
    req: HttpRequest,
    key: IdempotencyKeyHeader,
    body: Json<OrderBody>,
    actors: web::Data<Actors>,
) -> Reply {
    let one_product = body.0.items.is_none();
    let (items, card) = body.0.parse()?;
    let placed = actors
        .place(PlaceOrder {
            items,
            card,
            from_cart: false,
            idempotency_key: key.0,
            shopper: None,
            request_id: request_id::of(&req),
            admitted: None,
        })
        .await
        .map_err(|error| match error {
            // The seed's shape names its one product as it was given.
            OrderError::UnknownProduct { .. } if one_product => ApiError::InvalidField {
                field: Some("product_id".to_owned()),
                detail: error.to_string(),
            },
            other => ApiError::from(other),
        })?;
    let order = placed.order;
    let mut response = HttpResponse::Accepted();
    response.insert_header((header::LOCATION, format!("/api/orders/{}", order.order_id)));
    if placed.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(OrderAccepted {
        order_id: order.order_id,
        status: order.status(),
    }))
}

/// An order and where its saga stands.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Order)]
pub(super) struct OrderView {
    order_id: OrderId,
    status: OrderStatus,
    step: OrderStep,
    /// Its one line's product, for an order of one line (the seed's shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    product_id: Option<ProductId>,
    /// Its one line's quantity, for an order of one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    quantity: Option<Quantity>,
    items: Vec<LineView>,
    /// The sum of the lines' totals, in cents.
    total_amount: Money,
    /// The card it is paid with, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_method: Option<PaymentMethodView>,
    /// Why the order was rejected or its payment failed.
    reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A line of an order, with the product's name and price when it was placed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OrderLine)]
pub(super) struct LineView {
    product_id: ProductId,
    #[schema(value_type = String)]
    product_name: ProductName,
    #[schema(value_type = i64)]
    quantity: Quantity,
    /// In cents.
    #[schema(value_type = i64)]
    unit_price: Price,
    /// `unit_price` × `quantity`, in cents.
    line_total: Money,
}

/// A card, as the shop keeps it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PaymentMethod)]
pub(super) struct PaymentMethodView {
    /// `visa`, `mastercard`, `amex`, `discover` or `card`.
    #[schema(value_type = String, example = "visa")]
    brand: CardBrand,
    #[schema(example = "4242")]
    last4: String,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        let single = order.single_line().cloned();
        OrderView {
            status: order.status(),
            order_id: order.order_id,
            step: order.step,
            product_id: single.as_ref().map(|line| line.product_id.clone()),
            quantity: single.map(|line| line.quantity),
            items: (order.lines.into_iter())
                .map(|line| LineView {
                    line_total: line.line_total(),
                    product_id: line.product_id,
                    product_name: line.product_name,
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                })
                .collect(),
            total_amount: order.total_amount,
            payment_method: order.payment_method.map(|method| PaymentMethodView {
                brand: method.brand,
                last4: method.last4,
            }),
            reason: order.reason,
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

/// One order.
#[utoipa::path(
    get,
    path = "/api/orders/{order_id}",
    tag = "orders",
    params(("order_id" = OrderId, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "order_id is not a UUID", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such order", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The service is temporarily unavailable", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(super) async fn get_order(order_id: web::Path<String>, actors: web::Data<Actors>) -> Reply {
    let order_id = OrderId::parse(&order_id)?;
    let order = (actors.order(order_id).await?).ok_or_else(|| does_not_exist("order", order_id))?;
    Ok(HttpResponse::Ok().json(OrderView::from(order)))
}

// Payments.

/// A charge against an order, for its total.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct ChargeBody {
    order_id: OrderId,
    /// In cents: must be the order's `total_amount`.
    #[schema(value_type = Money)]
    total_amount: i64,
}

/// A payment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Payment)]
pub(super) struct PaymentView {
    payment_id: PaymentId,
    order_id: OrderId,
    total_amount: Money,
    status: PaymentStatus,
    /// Why the provider declined it, when it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<Payment> for PaymentView {
    fn from(payment: Payment) -> Self {
        PaymentView {
            payment_id: payment.payment_id,
            order_id: payment.order_id,
            total_amount: payment.total_amount,
            status: payment.status,
            reason: payment.reason,
            created_at: payment.created_at,
        }
    }
}

/// Charges an order. There is at most one payment per order.
#[utoipa::path(
    post,
    path = "/api/payments",
    tag = "payments",
    request_body(content = ChargeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The payment, succeeded or declined", body = PaymentView),
        (status = 400, description = "A body that is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such order", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The order cannot be paid now", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is larger than 16 KiB", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "A field is refused, or the amount is not the order's total", body = Problem, content_type = PROBLEM_JSON),
        (status = 502, description = "The payment provider failed (`code: \"payment_provider\"`); the charge may be sent again", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 504, description = "The payment provider did not answer in time (`code: \"payment_provider\"`); sent again, \
            the charge finds the payment if it was made", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The service is temporarily unavailable", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(super) async fn charge(body: Json<ChargeBody>, actors: web::Data<Actors>) -> Reply {
    let ChargeBody {
        order_id,
        total_amount,
    } = body.0;
    let order = actors
        .order(order_id)
        .await?
        .ok_or_else(|| does_not_exist("order", order_id))?;
    let payment = actors
        .payment
        .send(Charge {
            order,
            amount: Money::from_cents(total_amount),
        })
        .await??;
    Ok(HttpResponse::Ok().json(PaymentView::from(payment)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PaymentsQuery {
    /// The order whose payments to list (required).
    #[param(required = true)]
    order_id: Option<OrderId>,
}

/// An order's payments.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PaymentList {
    payments: Vec<PaymentView>,
}

/// An order's payments.
#[utoipa::path(
    get,
    path = "/api/payments",
    tag = "payments",
    params(PaymentsQuery),
    responses(
        (status = 200, description = "The order's payments (none, or one)", body = PaymentList),
        (status = 400, description = "order_id is missing or not a UUID", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The service is temporarily unavailable", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(super) async fn list_payments(
    query: web::Query<PaymentsQuery>,
    actors: web::Data<Actors>,
) -> Reply {
    let Some(order_id) = query.order_id else {
        return Err(ApiError::BadRequest(
            "order_id is required: GET /api/payments?order_id=<order id>".to_owned(),
        ));
    };
    let payments = actors.payment.send(ListPayments { order_id }).await??;
    Ok(HttpResponse::Ok().json(PaymentList {
        payments: payments.into_iter().map(PaymentView::from).collect(),
    }))
}

/// One payment.
#[utoipa::path(
    get,
    path = "/api/payments/{payment_id}",
    tag = "payments",
    params(("payment_id" = PaymentId, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 400, description = "payment_id is not a UUID", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such payment", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "The service is temporarily unavailable", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(super) async fn get_payment(payment_id: web::Path<String>, actors: web::Data<Actors>) -> Reply {
    let payment_id = PaymentId::parse(&payment_id)?;
    let payment = (actors.payment.send(GetPayment(payment_id)).await??)
        .ok_or_else(|| does_not_exist("payment", payment_id))?;
    Ok(HttpResponse::Ok().json(PaymentView::from(payment)))
}

// Request parts that are not the body.

/// Proof that the request carries the admin bearer token (`Authorization:
/// Bearer <token>`, the scheme in any case).
pub(super) struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let auth = req.app_data::<web::Data<AdminAuth>>();
        ready(match (presented, auth) {
            (Some(presented), Some(auth)) => match auth.check_token(req, presented) {
                Ok(true) => Ok(Admin),
                Ok(false) => Err(ApiError::Unauthorized),
                Err(refused) => Err(refused),
            },
            _ => Err(ApiError::Unauthorized),
        })
    }
}

/// The optional `Idempotency-Key` header, parsed.
pub(super) struct IdempotencyKeyHeader(Option<IdempotencyKey>);

impl FromRequest for IdempotencyKeyHeader {
    type Error = ApiError;
    type Future = Ready<Result<IdempotencyKeyHeader, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parsed = match req.headers().get("Idempotency-Key") {
            None => Ok(IdempotencyKeyHeader(None)),
            Some(value) => value
                .to_str()
                .map_err(|_| {
                    ApiError::BadRequest("Idempotency-Key must be visible ASCII".to_owned())
                })
                .and_then(|raw| Ok(IdempotencyKeyHeader(Some(IdempotencyKey::parse(raw)?)))),
        };
        ready(parsed)
    }
}
