//! The cart and the checkout. A plain form post answers with a redirect (or,
//! refused, the page again with the refusal beside its field); an htmx post
//! answers with the fragment that changed and the header's new cart count.

use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::error::ApiError;
use super::pages::{
    KEY_REUSED, Page, busy, buy_refused, find_order, form_quantity, html, is_htmx, new_key,
    not_found, product_or_404, refuse_foreign, see_other, shopping, unprocessable,
};
use super::request_id;
use super::session::{Shopper, Site};
use crate::actors::Actors;
use crate::actors::orders::{ChangeCart, GetCart, OrderError, OrderForKey, PlaceOrder};
use crate::actors::payment;
use crate::domain::{
    Card, CardNumber, Cvc, Expiry, IdempotencyKey, Item, Items, Product, ProductId,
};
use crate::store::CartEdit;
use crate::views::cart::{self, CardForm, CartLine, CheckoutView, TestCard};
use crate::views::{self, Shopping};

const FOREIGN: &str = "the cart can only be changed from the shop's own pages";

/// The cart's lines with their products as they are now.
async fn cart_lines(actors: &Actors, shopper: &Shopper) -> Page<(Vec<Item>, Vec<Option<Product>>)> {
    let items = actors.orders.send(GetCart(shopper.0)).await??;
    let mut products = Vec::with_capacity(items.len());
    for item in &items {
        products.push(actors.inventory.catalog.product(&item.product_id).await?);
    }
    Ok((items, products))
}

/// The cart's lines in a few characters (`mug:2,filters:1`), for the
/// checkout form to say which cart it was opened with.
fn digest(items: &[Item]) -> String {
    let lines: Vec<String> = (items.iter())
        .map(|item| format!("{}:{}", item.product_id, item.quantity.units()))
        .collect();
    lines.join(",")
}

fn lines<'a>(items: &'a [Item], products: &'a [Option<Product>]) -> Vec<CartLine<'a>> {
    (items.iter().zip(products))
        .map(|(item, product)| CartLine {
            item,
            product: product.as_ref(),
        })
        .collect()
}

pub(super) async fn view(shopper: Shopper, actors: web::Data<Actors>) -> Page {
    let (items, products) = cart_lines(&actors, &shopper).await?;
    let shopping = shopping(&actors, &shopper).await?;
    Ok(html(cart::cart_page(
        &lines(&items, &products),
        None,
        shopping,
    )))
}

/// The product form's fields ("Add to cart" posts the buy form here).
#[derive(Debug, Deserialize)]
pub(super) struct AddForm {
    product_id: String,
    quantity: String,
}

pub(super) async fn add(
    req: HttpRequest,
    shopper: Shopper,
    form: web::Form<AddForm>,
    site: web::Data<Site>,
    actors: web::Data<Actors>,
) -> Page {
    refuse_foreign(&req, &site, FOREIGN)?;
    let form = form.into_inner();
    let product = product_or_404(&actors, form.product_id).await?;
    // Refused, the product's form again (the same as a refused Buy).
    let refused =
        |message: &str, shopping| buy_refused(&req, &product, &new_key(), message, shopping);
    let units = match form_quantity(&form.quantity) {
        Ok(units) => units,
        Err(error) => return Ok(refused(&error.0, shopping(&actors, &shopper).await?)),
    };
    let change = ChangeCart {
        shopper: shopper.0,
        product_id: product.product_id.clone(),
        edit: CartEdit::Add(units),
    };
    match actors.orders.send(change).await? {
        Ok(()) => {}
        Err(error @ OrderError::CartFull) => {
            let message = format!("{error}: check out or remove a product first.");
            return Ok(refused(&message, shopping(&actors, &shopper).await?));
        }
        Err(error) => return Err(error.into()),
    }
    if !is_htmx(&req) {
        return Ok(see_other("/cart").finish());
    }
    let shopping = shopping(&actors, &shopper).await?;
    Ok(html(cart::added(
        &product,
        units.units(),
        shopping.cart_units,
    )))
}

/// A line's form: its new quantity, or `action=remove`.
#[derive(Debug, Deserialize)]
pub(super) struct LineForm {
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    action: String,
}

pub(super) async fn change(
    req: HttpRequest,
    product_id: web::Path<String>,
    shopper: Shopper,
    form: web::Form<LineForm>,
    site: web::Data<Site>,
    actors: web::Data<Actors>,
) -> Page {
    refuse_foreign(&req, &site, FOREIGN)?;
    let product_id =
        ProductId::parse(product_id.into_inner()).map_err(|_| not_found("no such product"))?;
    let edit = if form.action == "remove" {
        Ok(CartEdit::Remove)
    } else {
        form_quantity(&form.quantity)
            .map(CartEdit::Set)
            .map_err(|error| error.0)
    };
    if let Ok(edit) = edit {
        let change = ChangeCart {
            shopper: shopper.0,
            product_id: product_id.clone(),
            edit,
        };
        actors.orders.send(change).await??;
        if !is_htmx(&req) {
            return Ok(see_other("/cart").finish());
        }
    }
    // A quantity that is not one leaves the line as it was, with the refusal
    // beside it.
    let refused = edit
        .as_ref()
        .err()
        .map(|error| (&product_id, error.as_str()));
    let (items, products) = cart_lines(&actors, &shopper).await?;
    let lines = lines(&items, &products);
    let shopping = shopping(&actors, &shopper).await?;
    if !is_htmx(&req) {
        return Ok(unprocessable(cart::cart_page(&lines, refused, shopping)));
    }
    let name = (products.iter().flatten())
        .find(|product| product.product_id == product_id)
        .map_or(product_id.as_str(), |product| product.product_name.as_str());
    let said = match (
        &edit,
        items.iter().find(|item| item.product_id == product_id),
    ) {
        (Err(error), _) => format!("{name}: {error}"),
        (Ok(_), Some(item)) => format!("{name}: {} in your cart.", item.quantity.units()),
        (Ok(_), None) => format!("Removed {name} from your cart."),
    };
    let body = html! {
        (cart::cart_section(&lines, refused))
        (views::cart_count(shopping.cart_units, true))
        (views::cart_status(&said, true))
    };
    Ok(match refused {
        Some(_) => unprocessable(body),
        None => html(body),
    })
}

/// A failed order's lines, into the shopper's cart again (what the shop still
/// sells, as much as the cart holds); then to the cart.
pub(super) async fn again(
    req: HttpRequest,
    order_id: web::Path<String>,
    shopper: Shopper,
    site: web::Data<Site>,
    actors: web::Data<Actors>,
) -> Page {
    refuse_foreign(&req, &site, FOREIGN)?;
    let order = find_order(&actors, &order_id).await?;
    for line in &order.lines {
        let change = ChangeCart {
            shopper: shopper.0,
            product_id: line.product_id.clone(),
            edit: CartEdit::Add(line.quantity),
        };
        match actors.orders.send(change).await? {
            Ok(()) | Err(OrderError::NotSold(_)) => {}
            Err(OrderError::CartFull) => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(see_other("/cart").finish())
}

fn test_cards() -> Vec<TestCard> {
    (payment::test_cards().into_iter())
        .map(|(number, outcome)| TestCard { number, outcome })
        .collect()
}

pub(super) async fn checkout_page(shopper: Shopper, actors: web::Data<Actors>) -> Page {
    let (items, products) = cart_lines(&actors, &shopper).await?;
    if items.is_empty() {
        return Ok(see_other("/cart").finish());
    }
    let shopping = shopping(&actors, &shopper).await?;
    let form = CardForm {
        cart: digest(&items),
        ..CardForm::default()
    };
    let page = checkout_view(&items, &products, &new_key(), &form, shopping);
    Ok(html(page))
}

/// The checkout page for the cart's lines, with `form` filled in.
fn checkout_view(
    items: &[Item],
    products: &[Option<Product>],
    key: &IdempotencyKey,
    form: &CardForm,
    shopping: Shopping,
) -> Markup {
    cart::checkout_page(&CheckoutView {
        lines: &lines(items, products),
        key,
        form,
        test_cards: &test_cards(),
        shopping,
    })
}

/// The card form's fields. No `Debug`: the number and the CVC are never
/// printed.
#[derive(Deserialize)]
pub(super) struct CheckoutForm {
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    exp_month: String,
    #[serde(default)]
    exp_year: String,
    #[serde(default)]
    cvc: String,
    #[serde(default)]
    idempotency_key: String,
    /// The cart as the page showed it.
    #[serde(default)]
    cart: String,
}

impl CheckoutForm {
    /// The card, or every refusal by field (never with the number or CVC).
    fn card(&self) -> Result<Card, Vec<(&'static str, String)>> {
        let today = chrono::Utc::now().date_naive();
        let number = CardNumber::parse(&self.card_number);
        let month = self.exp_month.trim().parse::<i64>().unwrap_or(0);
        let year = self.exp_year.trim().parse::<i64>().unwrap_or(0);
        let expiry = Expiry::parse(month, year, today);
        let cvc = Cvc::parse(self.cvc.trim());
        match (number, expiry, cvc) {
            (Ok(number), Ok(expiry), Ok(cvc)) => Ok(Card {
                number,
                expiry,
                cvc,
            }),
            (number, expiry, cvc) => {
                // In a person's words; the API's name the fields.
                let mut errors = Vec::new();
                if number.is_err() {
                    let error = "Enter the card's number: 12 to 19 digits, as printed (this one \
                                 is not a card number; check for a typo).";
                    errors.push(("card_number", error.to_owned()));
                }
                match expiry {
                    Err(("exp_month", _)) => {
                        errors.push(("exp_month", "Enter the month, 1 to 12.".to_owned()));
                    }
                    Err((field, _)) if !(2000..=9999).contains(&year) => {
                        errors.push((field, "Enter the year with four digits.".to_owned()));
                    }
                    Err((field, _)) => {
                        errors.push((field, "This card has expired.".to_owned()));
                    }
                    Ok(_) => {}
                }
                if cvc.is_err() {
                    let error = "Enter the 3 or 4 digits of the security code (CVC).";
                    errors.push(("cvc", error.to_owned()));
                }
                Err(errors)
            }
        }
    }

    /// The form to show again, for the cart as it is now: the expiry as
    /// typed, the number and CVC empty.
    fn again(&self, cart: String, errors: Vec<(&'static str, String)>) -> CardForm {
        CardForm {
            cart,
            exp_month: self.exp_month.trim().chars().take(2).collect(),
            exp_year: self.exp_year.trim().chars().take(4).collect(),
            errors,
        }
    }
}

pub(super) async fn checkout(
    req: HttpRequest,
    shopper: Shopper,
    form: web::Form<CheckoutForm>,
    site: web::Data<Site>,
    actors: web::Data<Actors>,
) -> Page {
    refuse_foreign(&req, &site, FOREIGN)?;
    let form = form.into_inner();
    let key = IdempotencyKey::parse(&form.idempotency_key).unwrap_or_else(|_| new_key());
    let (items, products) = cart_lines(&actors, &shopper).await?;
    if items.is_empty() {
        // A second submit of a checkout that went through: its order answers.
        let placed = OrderForKey {
            key: key.clone(),
            shopper: Some(shopper.0),
        };
        return match actors.orders.send(placed).await?? {
            Some(order) => Ok(to_order(&req, &format!("/orders/{}", order.order_id))),
            None => Ok(see_other("/cart").finish()),
        };
    }
    // Shown again, refused: the card form (htmx), or the whole page.
    let refused = |errors: Vec<(&'static str, String)>, key: &IdempotencyKey, shopping| {
        let again = form.again(digest(&items), errors);
        if is_htmx(&req) {
            return cart::card_form(key, &again);
        }
        checkout_view(&items, &products, key, &again, shopping)
    };
    // Another tab changed the cart since this page was made: the shopper
    // orders what they saw, or looks again.
    if form.cart != digest(&items) {
        let shopping = shopping(&actors, &shopper).await?;
        let again = refused(vec![("form", CART_CHANGED.to_owned())], &key, shopping);
        return Ok(unprocessable(again));
    }
    let card = match form.card() {
        Ok(card) => card,
        Err(errors) => {
            let shopping = shopping(&actors, &shopper).await?;
            return Ok(unprocessable(refused(errors, &key, shopping)));
        }
    };
    let items = Items::parse(items.clone()).map_err(ApiError::from)?;
    let placed = actors
        .place(PlaceOrder {
            items,
            card: Some(card),
            from_cart: true,
            idempotency_key: Some(key.clone()),
            shopper: Some(shopper.0),
            request_id: request_id::of(&req),
            admitted: None,
        })
        .await;
    let refusal = match placed {
        Ok(placed) => {
            return Ok(to_order(
                &req,
                &format!("/orders/{}", placed.order.order_id),
            ));
        }
        // Shed: the form with the same key, so that sending it again is the
        // same order.
        Err(OrderError::Overloaded(overloaded)) => {
            let shopping = shopping(&actors, &shopper).await?;
            let form = refused(vec![("form", BUSY.to_owned())], &key, shopping);
            return Ok(busy(overloaded, form));
        }
        Err(OrderError::UnknownProduct { product_id, .. }) => {
            format!("{product_id} is no longer sold: remove it from your cart to check out.")
        }
        // Another checkout took the cart's lines first: the cart as it is now.
        Err(OrderError::CartChanged) => {
            let (items, products) = cart_lines(&actors, &shopper).await?;
            if items.is_empty() {
                return Ok(to_order(&req, "/cart"));
            }
            if is_htmx(&req) {
                return Ok(to_order(&req, "/checkout"));
            }
            let again = form.again(digest(&items), vec![("form", CART_CHANGED.to_owned())]);
            let shopping = shopping(&actors, &shopper).await?;
            let page = checkout_view(&items, &products, &new_key(), &again, shopping);
            return Ok(unprocessable(page));
        }
        Err(OrderError::IdempotencyKeyReused) => KEY_REUSED.to_owned(),
        Err(error) => return Err(error.into()),
    };
    let shopping = shopping(&actors, &shopper).await?;
    Ok(unprocessable(refused(
        vec![("form", refusal)],
        &new_key(),
        shopping,
    )))
}

/// To the order's page: a redirect, which htmx follows as a page load.
fn to_order(req: &HttpRequest, location: &str) -> HttpResponse {
    if is_htmx(req) {
        return HttpResponse::Ok()
            .insert_header(("HX-Redirect", location.to_owned()))
            .finish();
    }
    see_other(location).finish()
}

const CART_CHANGED: &str = "Your cart changed since this page was opened (in another tab?). \
                            Check your order and place it again.";

const BUSY: &str = "The shop is very busy right now and nothing was ordered. \
                    Please enter your card again and place the order in a moment.";
