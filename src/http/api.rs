//! The JSON API. Each handler parses the request into domain types, sends one
//! message, and renders the answer. Catalog reads are the exception that proves
//! the rule: they read the Inventory actor's published catalog (its snapshot, or
//! the database when other instances share it) instead of its mailbox, so
//! browsing never queues behind orders.

use std::future::{Ready, ready};

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::json::Json;
use super::request_id;
use super::session::AdminAuth;
use crate::actors::Actors;
use crate::actors::inventory::UpsertProduct;
use crate::actors::orders::PlaceOrder;
use crate::actors::payment::{Charge, GetPayment, ListPayments};
use crate::domain::{
    IdempotencyKey, Money, Order, OrderId, OrderStatus, OrderStep, Payment, PaymentId,
    PaymentStatus, Price, Product, ProductId, ProductName, Quantity, Stock,
};

type Reply = Result<HttpResponse, ApiError>;

/// The process answers: for a liveness probe.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The process can serve: its database answers (and was migrated before the
/// server started). For a readiness probe and a load balancer.
pub async fn readyz(actors: web::Data<Actors>) -> Reply {
    actors
        .ready()
        .await
        .map_err(|error| ApiError::Unavailable(Box::new(error)))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

// Products.

#[derive(Debug, Deserialize)]
pub struct ProductBody {
    product_name: ProductName,
    price: Price,
    stock: Stock,
}

pub async fn upsert_product(
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
    Ok(HttpResponse::Ok().json(product))
}

pub async fn get_product(product_id: web::Path<ProductId>, actors: web::Data<Actors>) -> Reply {
    match actors.inventory.catalog.product(&product_id).await? {
        Some(product) => Ok(HttpResponse::Ok().json(product)),
        None => Err(ApiError::NotFound(format!(
            "product {product_id} does not exist"
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    after: Option<ProductId>,
    limit: Option<u16>,
}

#[derive(Debug, Serialize)]
struct ProductPage {
    products: Vec<Product>,
    /// Pass as `after` to get the next page; absent on the last page.
    next_after: Option<ProductId>,
}

const DEFAULT_PAGE: usize = 50;
const LARGEST_PAGE: usize = 500;

pub async fn list_products(query: web::Query<PageQuery>, actors: web::Data<Actors>) -> Reply {
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
        products: page.products,
        next_after: page.next_after,
    }))
}

// Orders.

#[derive(Debug, Deserialize)]
pub struct OrderBody {
    product_id: ProductId,
    quantity: Quantity,
}

#[derive(Debug, Serialize)]
struct OrderAccepted {
    order_id: OrderId,
    status: OrderStatus,
}

pub async fn place_order(
    req: HttpRequest,
    key: IdempotencyKeyHeader,
    body: Json<OrderBody>,
    actors: web::Data<Actors>,
) -> Reply {
    let OrderBody {
        product_id,
        quantity,
    } = body.0;
    let placed = actors
        .orders
        .send(PlaceOrder {
            product_id,
            quantity,
            idempotency_key: key.0,
            shopper: None,
            request_id: request_id::of(&req),
        })
        .await??;
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

#[derive(Debug, Serialize)]
struct OrderView {
    order_id: OrderId,
    status: OrderStatus,
    step: OrderStep,
    product_id: ProductId,
    quantity: Quantity,
    total_amount: Money,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        OrderView {
            status: order.status(),
            order_id: order.order_id,
            step: order.step,
            product_id: order.product_id,
            quantity: order.quantity,
            total_amount: order.total_amount,
            reason: order.reason,
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

pub async fn get_order(order_id: web::Path<String>, actors: web::Data<Actors>) -> Reply {
    let order_id = OrderId::parse(&order_id)?;
    match actors.order(order_id).await? {
        Some(order) => Ok(HttpResponse::Ok().json(OrderView::from(order))),
        None => Err(ApiError::NotFound(format!(
            "order {order_id} does not exist"
        ))),
    }
}

// Payments.

#[derive(Debug, Deserialize)]
pub struct ChargeBody {
    order_id: OrderId,
    total_amount: i64,
}

#[derive(Debug, Serialize)]
struct PaymentView {
    payment_id: PaymentId,
    order_id: OrderId,
    total_amount: Money,
    status: PaymentStatus,
    created_at: DateTime<Utc>,
}

impl From<Payment> for PaymentView {
    fn from(payment: Payment) -> Self {
        PaymentView {
            payment_id: payment.payment_id,
            order_id: payment.order_id,
            total_amount: payment.total_amount,
            status: payment.status,
            created_at: payment.created_at,
        }
    }
}

pub async fn charge(body: Json<ChargeBody>, actors: web::Data<Actors>) -> Reply {
    let ChargeBody {
        order_id,
        total_amount,
    } = body.0;
    let order = actors
        .order(order_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {order_id} does not exist")))?;
    let payment = actors
        .payment
        .send(Charge {
            order,
            amount: Money::from_cents(total_amount),
        })
        .await??;
    Ok(HttpResponse::Ok().json(PaymentView::from(payment)))
}

#[derive(Debug, Deserialize)]
pub struct PaymentsQuery {
    order_id: Option<OrderId>,
}

#[derive(Debug, Serialize)]
struct PaymentList {
    payments: Vec<PaymentView>,
}

pub async fn list_payments(query: web::Query<PaymentsQuery>, actors: web::Data<Actors>) -> Reply {
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

pub async fn get_payment(payment_id: web::Path<String>, actors: web::Data<Actors>) -> Reply {
    let payment_id = PaymentId::parse(&payment_id)?;
    match actors.payment.send(GetPayment(payment_id)).await?? {
        Some(payment) => Ok(HttpResponse::Ok().json(PaymentView::from(payment))),
        None => Err(ApiError::NotFound(format!(
            "payment {payment_id} does not exist"
        ))),
    }
}

// Request parts that are not the body.

/// Proof that the request carries the admin bearer token (`Authorization:
/// Bearer <token>`, the scheme in any case).
pub struct Admin;

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
pub struct IdempotencyKeyHeader(Option<IdempotencyKey>);

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
