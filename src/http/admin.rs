//! The admin pages. Signing in exchanges the admin token for a session cookie;
//! every form post then needs that session, a matching CSRF token and no foreign
//! `Origin`. Signing out ends the session for good. Product writes go through the
//! same `UpsertProduct` message as the API. Every answer here is `no-store`.

use actix_web::{HttpRequest, HttpResponse, web};
use maud::Markup;
use serde::Deserialize;

use super::error::ApiError;
use super::pages::{
    Page, PageError, find_product, html, html_as, not_found, refuse_foreign, see_other,
    unprocessable,
};
use super::session::{AdminAuth, Site};
use crate::actors::Actors;
use crate::actors::inventory::UpsertProduct;
use crate::actors::orders::{GetOrderTimeline, ListOrders, ListStalled, RetryNow};
use crate::actors::sessions::AdminSession;
use crate::domain::{
    Money, OrderId, OrderStatus, ParseError, Price, Product, ProductId, ProductName, Stock,
};
use crate::views::admin::{self as view, ProductForm};

/// A form post from another site's page.
const CROSS_SITE: &str = "cross-site request refused";

const ADMIN_LIST: usize = 500;

#[derive(Debug, Deserialize)]
pub(super) struct DashboardQuery {
    saved: Option<ProductId>,
}

pub(super) async fn dashboard(
    req: HttpRequest,
    query: web::Query<DashboardQuery>,
    auth: web::Data<AdminAuth>,
    actors: web::Data<Actors>,
) -> Page {
    let Some(session) = auth.session(&req).await? else {
        return Ok(html(view::sign_in_page(None)));
    };
    let notice = query.saved.as_ref().map(|id| format!("Saved {id}."));
    Ok(html(
        dashboard_view(
            &actors,
            &ProductForm::default(),
            &session,
            notice.as_deref(),
        )
        .await?,
    ))
}

async fn dashboard_view(
    actors: &Actors,
    form: &ProductForm,
    session: &AdminSession,
    notice: Option<&str>,
) -> Result<Markup, PageError> {
    let products = actors
        .inventory
        .catalog
        .page(None, ADMIN_LIST)
        .await?
        .products;
    Ok(view::dashboard(&products, form, &session.csrf, notice))
}

#[derive(Debug, Deserialize)]
pub(super) struct SignInForm {
    token: String,
}

pub(super) async fn sign_in(
    req: HttpRequest,
    form: web::Form<SignInForm>,
    auth: web::Data<AdminAuth>,
    site: web::Data<Site>,
) -> Page {
    refuse_foreign(&req, &site, CROSS_SITE)?;
    if !auth.check_token(&req, form.token.trim())? {
        let page = view::sign_in_page(Some("That is not the admin token."));
        return Ok(html_as(HttpResponse::Unauthorized(), page));
    }
    Ok(see_other("/admin")
        .cookie(auth.sign_in(&site).await?)
        .finish())
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn sign_out(
    req: HttpRequest,
    form: web::Form<CsrfForm>,
    auth: web::Data<AdminAuth>,
    site: web::Data<Site>,
) -> Page {
    let session = authorize(&req, &auth, &site, &form.csrf).await?;
    auth.sign_out(&session).await?;
    Ok(see_other("/admin")
        .cookie(AdminAuth::signed_out_cookie(&site))
        .finish())
}

/// The session behind a form post, if it is a genuine one from our own pages.
async fn authorize(
    req: &HttpRequest,
    auth: &AdminAuth,
    site: &Site,
    csrf: &str,
) -> Result<AdminSession, PageError> {
    refuse_foreign(req, site, CROSS_SITE)?;
    let session = auth
        .session(req)
        .await?
        .ok_or(PageError(ApiError::Unauthorized))?;
    if !session.accepts_csrf(csrf) {
        return Err(PageError(ApiError::Forbidden(
            "the form is out of date or was not sent from this site; reload the page".to_owned(),
        )));
    }
    Ok(session)
}

const ADMIN_ORDERS: u32 = 100;

#[derive(Debug, Deserialize)]
pub(super) struct OrdersQuery {
    status: Option<String>,
    /// `1`: only the stalled ones.
    stalled: Option<u8>,
    /// The order a "retry now" was asked for.
    retried: Option<String>,
    /// Whether that order's saga runs here.
    here: Option<u8>,
}

/// The most recent orders, filtered by status.
pub(super) async fn orders(
    req: HttpRequest,
    query: web::Query<OrdersQuery>,
    auth: web::Data<AdminAuth>,
    actors: web::Data<Actors>,
) -> Page {
    let Some(session) = auth.session(&req).await? else {
        return Ok(see_other("/admin").finish());
    };
    if query.stalled == Some(1) {
        let stalled = actors
            .orders
            .send(ListStalled {
                limit: ADMIN_ORDERS,
            })
            .await??;
        let retried = query
            .retried
            .as_deref()
            .and_then(|id| OrderId::parse(id).ok());
        let notice = retried.map(|id| match query.here {
            Some(1) => format!("Retrying {id} now."),
            _ => {
                format!("The saga of {id} does not run on this instance; it retries where it runs.")
            }
        });
        return Ok(html(view::stalled_page(
            &stalled,
            &session.csrf,
            notice.as_deref(),
        )));
    }
    let status = query
        .status
        .as_deref()
        .map(OrderStatus::parse)
        .transpose()?;
    let orders = actors
        .orders
        .send(ListOrders {
            status,
            limit: ADMIN_ORDERS,
        })
        .await??;
    Ok(html(view::orders_page(&orders, status, &session.csrf)))
}

/// Retries a stalled order's saga now.
pub(super) async fn retry_order(
    req: HttpRequest,
    order_id: web::Path<String>,
    form: web::Form<CsrfForm>,
    auth: web::Data<AdminAuth>,
    site: web::Data<Site>,
    actors: web::Data<Actors>,
) -> Page {
    authorize(&req, &auth, &site, &form.csrf).await?;
    let order_id = OrderId::parse(&order_id).map_err(|_| not_found("no such order"))?;
    let here = actors.orders.send(RetryNow(order_id)).await?;
    Ok(see_other(&format!(
        "/admin/orders?stalled=1&retried={order_id}&here={}",
        u8::from(here)
    ))
    .finish())
}

/// One order's timeline.
pub(super) async fn order(
    req: HttpRequest,
    order_id: web::Path<String>,
    auth: web::Data<AdminAuth>,
    actors: web::Data<Actors>,
) -> Page {
    let Some(session) = auth.session(&req).await? else {
        return Ok(see_other("/admin").finish());
    };
    let order_id = OrderId::parse(&order_id).map_err(|_| not_found("no such order"))?;
    let (order, events) = actors
        .orders
        .send(GetOrderTimeline(order_id))
        .await??
        .ok_or_else(|| not_found("no such order"))?;
    Ok(html(view::order_page(&order, &events, &session.csrf)))
}

#[derive(Debug, Deserialize)]
pub(super) struct ProductFields {
    csrf: String,
    product_id: String,
    product_name: String,
    price: String,
    stock: String,
}

pub(super) async fn create_product(
    req: HttpRequest,
    form: web::Form<ProductFields>,
    auth: web::Data<AdminAuth>,
    site: web::Data<Site>,
    actors: web::Data<Actors>,
) -> Page {
    let session = authorize(&req, &auth, &site, &form.csrf).await?;
    let fields = form.into_inner();
    match parse_product(&fields) {
        Ok(product) => save(&actors, product).await,
        Err(form) => Ok(unprocessable(
            dashboard_view(&actors, &form, &session, None).await?,
        )),
    }
}

/// Creates or replaces the product, then back to the dashboard, which says so.
async fn save(actors: &Actors, product: Product) -> Page {
    let saved = actors
        .inventory
        .addr
        .send(UpsertProduct(product))
        .await?
        .map_err(ApiError::from)?;
    Ok(see_other(&format!("/admin?saved={}", saved.product_id)).finish())
}

pub(super) async fn edit_product(
    req: HttpRequest,
    product_id: web::Path<String>,
    auth: web::Data<AdminAuth>,
    actors: web::Data<Actors>,
) -> Page {
    let Some(session) = auth.session(&req).await? else {
        return Ok(see_other("/admin").finish());
    };
    let product = find_product(&actors, product_id.into_inner())
        .await?
        .ok_or_else(|| not_found("no such product"))?;
    Ok(html(view::edit_page(
        &ProductForm::from_product(&product),
        &session.csrf,
    )))
}

pub(super) async fn update_product(
    req: HttpRequest,
    product_id: web::Path<String>,
    form: web::Form<ProductFields>,
    auth: web::Data<AdminAuth>,
    site: web::Data<Site>,
    actors: web::Data<Actors>,
) -> Page {
    let session = authorize(&req, &auth, &site, &form.csrf).await?;
    let mut fields = form.into_inner();
    // The product edited is the one in the URL, whatever the form says.
    fields.product_id = product_id.into_inner();
    match parse_product(&fields) {
        Ok(product) => save(&actors, product).await,
        Err(form) => Ok(unprocessable(view::edit_page(&form, &session.csrf))),
    }
}

/// The form's fields as a product, or the form again with an error per bad field.
fn parse_product(fields: &ProductFields) -> Result<Product, ProductForm> {
    let product_id = ProductId::parse(fields.product_id.trim());
    let product_name = ProductName::parse(fields.product_name.as_str());
    let price = Money::parse_dollars(&fields.price).and_then(|amount| Price::parse(amount.cents()));
    let stock = (fields.stock.trim().parse::<i64>())
        .map_err(|_| ParseError::new("stock must be a whole number"))
        .and_then(Stock::parse);
    match (product_id, product_name, price, stock) {
        (Ok(product_id), Ok(product_name), Ok(price), Ok(stock)) => Ok(Product {
            product_id,
            product_name,
            price,
            stock,
        }),
        (product_id, product_name, price, stock) => Err(ProductForm {
            product_id: fields.product_id.clone(),
            product_name: fields.product_name.clone(),
            price: fields.price.clone(),
            stock: fields.stock.clone(),
            errors: [
                ("product_id", product_id.err()),
                ("product_name", product_name.err()),
                ("price", price.err()),
                ("stock", stock.err()),
            ]
            .into_iter()
            .filter_map(|(field, error)| Some((field, error?.to_string())))
            .collect(),
        }),
    }
}
