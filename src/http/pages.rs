//! The storefront's pages and fragments. Like the API, each handler parses, sends
//! one message (or reads the catalog snapshot), and renders; errors become HTML
//! error pages instead of problem+json.

use actix::MailboxError;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::error::ApiError;
use super::request_id;
use super::session::{Shopper, Site};
use crate::actors::Actors;
use crate::actors::admission::Overloaded;
use crate::actors::inventory::InventoryError;
use crate::actors::orders::{GetShopper, ListShopperOrders, OrderError, PlaceOrder};
use crate::assets;
use crate::domain::{
    IdempotencyKey, Item, Items, Order, OrderId, ParseError, Product, ProductId, Quantity,
};
use crate::telemetry::error_chain;
use crate::views::catalog::FormNote;
use crate::views::{self, Shopping, catalog};

/// An error on a page: the same kinds and statuses as the API's, shown as a page.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(super) struct PageError(#[from] pub ApiError);

/// The errors a page's handler meets, each as the API's error for it.
macro_rules! page_error_from {
    ($($error:ty),*) => {$(
        impl From<$error> for PageError {
            fn from(error: $error) -> Self {
                PageError(error.into())
            }
        }
    )*};
}

page_error_from!(OrderError, MailboxError, InventoryError, ParseError);

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (title, detail) = if status == StatusCode::NOT_FOUND {
            ("Page not found", "We could not find that page.".to_owned())
        } else if status.is_server_error() {
            tracing::error!(error = %error_chain(&self.0), "page failed");
            (
                "Something went wrong",
                "Please try again in a moment.".to_owned(),
            )
        } else {
            (
                status.canonical_reason().unwrap_or("Error"),
                self.0.to_string(),
            )
        };
        let page = views::errors::error_page(status.as_u16(), title, &detail);
        refusal_html(&self.0, page)
    }
}

pub(super) type Page<T = HttpResponse> = Result<T, PageError>;

/// `markup` as the answer `response` starts.
pub(super) fn html_as(mut response: HttpResponseBuilder, markup: Markup) -> HttpResponse {
    response
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

pub(super) fn html(markup: Markup) -> HttpResponse {
    html_as(HttpResponse::Ok(), markup)
}

/// 422, with the page or fragment that says what to change.
pub(super) fn unprocessable(markup: Markup) -> HttpResponse {
    html_as(HttpResponse::UnprocessableEntity(), markup)
}

/// `markup` with the refusal's status and headers (`Retry-After`, …).
fn refusal_html(refusal: &ApiError, markup: Markup) -> HttpResponse {
    let mut response = HttpResponse::build(refusal.status_code());
    refusal.add_headers(&mut response);
    html_as(response, markup)
}

/// An order the shop shed: 503 with `Retry-After`, and `form` to send again.
pub(super) fn busy(overloaded: Overloaded, form: Markup) -> HttpResponse {
    let refusal = ApiError::Overloaded(overloaded);
    refusal.log();
    refusal_html(&refusal, form)
}

/// A form post from another site's page is refused with `refusal`.
pub(super) fn refuse_foreign(req: &HttpRequest, site: &Site, refusal: &str) -> Page<()> {
    if site.same_origin(req) {
        return Ok(());
    }
    Err(PageError(ApiError::Forbidden(refusal.to_owned())))
}

/// A checkout or buy whose form's key was used for another order.
pub(super) const KEY_REUSED: &str =
    "This form was already used for another order. Please try again.";

/// A 303 to `location`: the answer to a form post that worked (cookies may be
/// added before it is finished).
pub(super) fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, location.to_owned()));
    response
}

pub(super) fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("HX-Request")
}

pub(super) fn new_key() -> IdempotencyKey {
    // A UUID is always a valid key.
    IdempotencyKey::parse(&uuid::Uuid::new_v4().to_string())
        .unwrap_or_else(|_| unreachable!("a UUID is a valid idempotency key"))
}

/// A quantity as a form field gives it; anything but a whole number in range
/// is refused with the rule.
pub(super) fn form_quantity(raw: &str) -> Result<Quantity, ParseError> {
    Quantity::parse(raw.trim().parse::<i64>().unwrap_or(0))
}

pub(super) fn not_found(what: &str) -> PageError {
    PageError(ApiError::NotFound(what.to_owned()))
}

/// The product a path or form names; `None` for an id that is not even valid.
pub(super) async fn find_product(
    actors: &Actors,
    raw_id: String,
) -> Result<Option<Product>, PageError> {
    match ProductId::parse(raw_id) {
        Ok(id) => Ok(actors.inventory.catalog.product(&id).await?),
        Err(_) => Ok(None),
    }
}

/// The order a path names.
pub(super) async fn find_order(actors: &Actors, raw_id: &str) -> Page<Order> {
    let order_id = OrderId::parse(raw_id).map_err(|_| not_found("no such order"))?;
    (actors.order(order_id).await?).ok_or_else(|| not_found("no such order"))
}

/// The product a path or form names, or the 404 page.
pub(super) async fn product_or_404(actors: &Actors, raw_id: String) -> Page<Product> {
    (find_product(actors, raw_id).await?).ok_or_else(|| not_found("no such product"))
}

#[derive(Debug, Deserialize)]
pub(super) struct CatalogQuery {
    after: Option<ProductId>,
}

const CATALOG_PAGE: usize = 24;

/// What the frame of a shop page shows of the shopper.
pub(super) async fn shopping(actors: &Actors, shopper: &Shopper) -> Result<Shopping, PageError> {
    let summary = actors.orders.send(GetShopper(shopper.0)).await??;
    Ok(Shopping {
        cart_units: summary.cart_units,
        awaiting: summary.awaiting,
        since_ms: chrono::Utc::now().timestamp_millis(),
        except: None,
    })
}

pub(super) async fn catalog(
    query: web::Query<CatalogQuery>,
    shopper: Shopper,
    actors: web::Data<Actors>,
) -> Page {
    let page = actors
        .inventory
        .catalog
        .page(query.after.as_ref(), CATALOG_PAGE)
        .await?;
    let keys: Vec<IdempotencyKey> = page.products.iter().map(|_| new_key()).collect();
    Ok(html(catalog::catalog_page(&catalog::CatalogView {
        products: &page.products,
        next_after: page.next_after.as_ref(),
        paged: query.after.is_some(),
        keys: &keys,
        shopping: shopping(&actors, &shopper).await?,
    })))
}

pub(super) async fn product(
    product_id: web::Path<String>,
    shopper: Shopper,
    actors: web::Data<Actors>,
) -> Page {
    let product = product_or_404(&actors, product_id.into_inner()).await?;
    let shopping = shopping(&actors, &shopper).await?;
    Ok(html(catalog::product_page(
        &product,
        &new_key(),
        None,
        shopping,
    )))
}

#[derive(Debug, Deserialize)]
pub(super) struct IdsQuery {
    ids: String,
}

const MOST_POLLED: usize = 100;

/// Fresh availability badges and Buy buttons for the products on a page.
pub(super) async fn availability(query: web::Query<IdsQuery>, actors: web::Data<Actors>) -> Page {
    let ids: Vec<ProductId> = query
        .ids
        .split(',')
        .filter(|id| !id.is_empty())
        .take(MOST_POLLED)
        .map(ProductId::parse)
        .collect::<Result<_, _>>()?;
    let mut products = Vec::with_capacity(ids.len());
    for id in &ids {
        products.extend(actors.inventory.catalog.product(id).await?);
    }
    Ok(html(catalog::availability_fragment(&products)))
}

#[derive(Debug, Deserialize)]
pub(super) struct BuyForm {
    product_id: String,
    quantity: String,
    idempotency_key: String,
}

/// Buying: a plain form post is answered with 303 to the order's page; an htmx
/// post with the order panel, swapped into the product's slot.
pub(super) async fn buy(
    req: HttpRequest,
    shopper: Shopper,
    form: web::Form<BuyForm>,
    site: web::Data<Site>,
    actors: web::Data<Actors>,
) -> Page {
    let foreign = "orders can only be placed from the shop's own pages";
    refuse_foreign(&req, &site, foreign)?;
    let form = form.into_inner();
    let product = product_or_404(&actors, form.product_id).await?;
    let key = IdempotencyKey::parse(&form.idempotency_key)?;
    let quantity = match form_quantity(&form.quantity) {
        Ok(quantity) => quantity,
        Err(error) => {
            return Ok(buy_refused(
                &req,
                &product,
                &key,
                &error.to_string(),
                shopping(&actors, &shopper).await?,
            ));
        }
    };
    let placed = actors
        .place(PlaceOrder {
            items: Items::one(Item {
                product_id: product.product_id.clone(),
                quantity,
            }),
            card: None,
            from_cart: false,
            idempotency_key: Some(key.clone()),
            shopper: Some(shopper.0),
            request_id: request_id::of(&req),
            admitted: None,
        })
        .await;
    let placed = match placed {
        Ok(placed) => placed,
        Err(OrderError::IdempotencyKeyReused) => {
            let shopping = shopping(&actors, &shopper).await?;
            let refused = buy_refused(&req, &product, &new_key(), KEY_REUSED, shopping);
            return Ok(refused);
        }
        // At the shop's limit nothing was stored: the same form (its key
        // included) may be sent again.
        Err(OrderError::Overloaded(overloaded)) => {
            return Ok(buy_busy(
                &req,
                &product,
                &key,
                quantity,
                overloaded,
                shopping(&actors, &shopper).await?,
            ));
        }
        Err(error) => return Err(error.into()),
    };

    let order = placed.order;
    if !is_htmx(&req) {
        return Ok(see_other(&format!("/orders/{}", order.order_id)).finish());
    }
    Ok(html(html! {
        (views::order::order_panel(&order))
        (catalog::key_input(&product, &new_key(), true))
    }))
}

/// A buy the shop shed: 503 with `Retry-After`, and the form as the shopper
/// left it (htmx: only the notice, in the order's slot; a page: the product
/// with its form filled in and the notice under it).
fn buy_busy(
    req: &HttpRequest,
    product: &Product,
    key: &IdempotencyKey,
    quantity: Quantity,
    overloaded: Overloaded,
    shopping: Shopping,
) -> HttpResponse {
    let form = if is_htmx(req) {
        catalog::busy_notice()
    } else {
        catalog::product_page(product, key, Some(FormNote::Busy { quantity }), shopping)
    };
    busy(overloaded, form)
}

/// A refused buy or Add to cart: 422, with the message in the product's slot
/// (htmx) or under the product's form (a page).
pub(super) fn buy_refused(
    req: &HttpRequest,
    product: &Product,
    key: &IdempotencyKey,
    message: &str,
    shopping: Shopping,
) -> HttpResponse {
    let body = if is_htmx(req) {
        html! { p.field-error role="alert" { (message) } }
    } else {
        catalog::product_page(product, key, Some(FormNote::Refused(message)), shopping)
    };
    unprocessable(body)
}

pub(super) async fn order(
    order_id: web::Path<String>,
    shopper: Shopper,
    actors: web::Data<Actors>,
) -> Page {
    let order = find_order(&actors, &order_id).await?;
    // The page follows this order itself: its outcome is no toast here.
    let shopping = Shopping {
        except: Some(order.order_id),
        ..shopping(&actors, &shopper).await?
    };
    Ok(html(views::order::order_page(&order, shopping)))
}

const MY_ORDERS: u32 = 50;

pub(super) async fn my_orders(shopper: Shopper, actors: web::Data<Actors>) -> Page {
    let orders = actors
        .orders
        .send(ListShopperOrders {
            shopper: shopper.0,
            limit: MY_ORDERS,
        })
        .await??;
    let shopping = shopping(&actors, &shopper).await?;
    Ok(html(views::order::my_orders_page(&orders, shopping)))
}

/// A compiled-in asset. Its URL carries its content hash, so it never changes:
/// browsers and proxies may keep it for a year.
pub(super) async fn asset(req: HttpRequest) -> Result<HttpResponse, PageError> {
    let asset = assets::at_path(req.path()).ok_or_else(|| not_found("no such file"))?;
    let cached = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tag| tag == asset.etag);
    let mut response = if cached {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::ETAG, asset.etag.clone()));
    Ok(if cached {
        response.finish()
    } else {
        response.content_type(asset.content_type).body(asset.bytes)
    })
}

/// Pages that do not exist: an HTML 404 for people, problem+json for the API.
pub(super) async fn not_found_page(req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    if req.path().starts_with("/api/") {
        return Err(ApiError::NotFound(format!("no resource at {}", req.path())).into());
    }
    Err(not_found("no such page").into())
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    #[test]
    fn a_server_error_is_a_friendly_page_without_its_cause() {
        let error = PageError(ApiError::Internal("disk full at /var/lib/secret".into()));

        let response = error.error_response();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().try_into_bytes().unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("Something went wrong"), "{body}");
        assert!(
            !body.contains("disk full") && !body.contains("secret"),
            "{body}"
        );
    }
}
