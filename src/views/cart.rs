//! The cart and the checkout. Both work as plain forms (each post answers with a
//! redirect or the page again) and, with htmx, swap only what changed: the
//! cart's table after a change, the card form after a refusal.

use maud::{Markup, html};

use super::{Section, Shopping, availability, cart_count, cart_status, shop_page};
use crate::domain::{IdempotencyKey, Item, Money, Product, ProductId};

/// A line of the cart: what the shopper wants, and the product as it is now
/// (`None` when the shop no longer sells it).
pub struct CartLine<'a> {
    pub item: &'a Item,
    pub product: Option<&'a Product>,
}

impl CartLine<'_> {
    fn total(&self) -> Option<Money> {
        self.product
            .and_then(|p| p.price.money().checked_mul(self.item.quantity.units()))
    }

    /// Why the line could not be bought as it is now, if it could not.
    fn problem(&self) -> Option<String> {
        let Some(product) = self.product else {
            return Some("No longer sold: remove it to check out.".to_owned());
        };
        let (wanted, left) = (i64::from(self.item.quantity), product.stock.units());
        match left {
            0 => Some("Sold out: this order would be rejected.".to_owned()),
            left if left < wanted => Some(format!(
                "Only {left} left: this order would be rejected unless you take fewer."
            )),
            _ => None,
        }
    }
}

/// The cart's total, over the lines the shop still sells.
fn total(lines: &[CartLine<'_>]) -> Money {
    (lines.iter())
        .filter_map(CartLine::total)
        .fold(Money::ZERO, |sum, line| {
            sum.checked_add(line).unwrap_or(sum)
        })
}

/// The cart page; `refused` is a line's refused quantity: (product, why).
pub fn cart_page(
    lines: &[CartLine<'_>],
    refused: Option<(&ProductId, &str)>,
    shopping: Shopping,
) -> Markup {
    shop_page(
        "Your cart",
        Section::Cart,
        shopping,
        html! {
            h1 { "Your cart" }
            (cart_section(lines, refused))
        },
    )
}

/// The cart's table and its way on: what a change swaps in.
pub fn cart_section(lines: &[CartLine<'_>], refused: Option<(&ProductId, &str)>) -> Markup {
    let sellable = lines.iter().all(|line| line.product.is_some());
    html! {
        section #cart aria-label="Cart" {
            @if lines.is_empty() {
                p.empty { "Your cart is empty. " a href="/" { "Browse the catalog" } "." }
            } @else {
                table.lines.cart {
                    caption.visually-hidden { "The products in your cart" }
                    thead { tr {
                        th scope="col" { "Product" } th scope="col" { "Price" }
                        th scope="col" { "Quantity" } th scope="col" { "Line total" }
                    } }
                    tbody {
                        @for line in lines {
                            (cart_row(line, refused.filter(|(id, _)| **id == line.item.product_id).map(|(_, why)| why)))
                        }
                    }
                    tfoot { tr { th scope="row" colspan="3" { "Total" } td #cart-total { (total(lines)) } } }
                }
                p.cart-actions {
                    a href="/" { "Keep shopping" }
                    @if sellable {
                        a.button href="/checkout" { "Check out" }
                    }
                }
            }
        }
    }
}

fn cart_row(line: &CartLine<'_>, refused: Option<&str>) -> Markup {
    let id = line.item.product_id.as_str();
    let name = line.product.map_or(id, |p| p.product_name.as_str());
    let problem = refused.map(str::to_owned).or_else(|| line.problem());
    html! {
        tr {
            td {
                @if line.product.is_some() {
                    a href=(format!("/products/{id}")) { (name) }
                } @else {
                    (name)
                }
                @if let Some(product) = line.product {
                    " " (availability(product, false))
                }
                @if let Some(problem) = &problem {
                    p.field-error id=(format!("problem-{id}")) { (problem) }
                }
            }
            td { @if let Some(product) = line.product { (product.price.money()) } }
            td {
                form.line-form method="post" action=(format!("/cart/{id}"))
                    hx-post=(format!("/cart/{id}")) hx-target="#cart" hx-swap="outerHTML"
                    hx-disabled-elt="find button" {
                    label.visually-hidden for=(format!("cart-quantity-{id}")) { "Quantity of " (name) }
                    input id=(format!("cart-quantity-{id}")) type="number" name="quantity"
                        value=(line.item.quantity.units()) min="1" max="1000" required
                        aria-invalid=[refused.map(|_| "true")]
                        aria-describedby=[problem.as_ref().map(|_| format!("problem-{id}"))];
                    button id=(format!("update-{id}")) type="submit" name="action" value="update" { "Update" }
                    button.secondary id=(format!("remove-{id}")) type="submit" name="action" value="remove"
                        formnovalidate aria-label=(format!("Remove {name}")) { "Remove" }
                }
            }
            td { @if let Some(total) = line.total() { (total) } }
        }
    }
}

/// The answer to "Add to cart" in a product's slot (htmx), with the header's
/// new count.
pub fn added(product: &Product, units: u32, cart_units: u32) -> Markup {
    let said = format!(
        "Added {units} × {} to your cart.",
        product.product_name.as_str()
    );
    html! {
        p.added {
            (said) " "
            a href="/cart" { "View cart" }
        }
        (cart_count(cart_units, true))
        (cart_status(&said, true))
    }
}

/// A test card, as the checkout lists it for a person trying the shop.
pub struct TestCard {
    pub number: String,
    pub outcome: String,
}

/// The card form as it stands: the expiry as typed, and the refusals by
/// field. The number and the CVC are never put back in the page.
#[derive(Default)]
pub struct CardForm {
    /// The cart's lines as the page showed them (`mug:2,filters:1`): an order
    /// is placed only for the cart the shopper saw.
    pub cart: String,
    pub exp_month: String,
    pub exp_year: String,
    pub errors: Vec<(&'static str, String)>,
}

impl CardForm {
    fn error(&self, field: &str) -> Option<&str> {
        (self.errors.iter())
            .find(|(name, _)| *name == field)
            .map(|(_, error)| error.as_str())
    }
}

pub struct CheckoutView<'a> {
    pub lines: &'a [CartLine<'a>],
    pub key: &'a IdempotencyKey,
    pub form: &'a CardForm,
    pub test_cards: &'a [TestCard],
    pub shopping: Shopping,
}

pub fn checkout_page(view: &CheckoutView<'_>) -> Markup {
    shop_page(
        "Checkout",
        Section::Cart,
        view.shopping,
        html! {
            h1 { "Checkout" }
            div.checkout {
                section aria-labelledby="checkout-order" {
                    h2 #checkout-order { "Your order" }
                    table.lines {
                        caption.visually-hidden { "What you are buying" }
                        thead { tr {
                            th scope="col" { "Product" } th scope="col" { "Quantity" }
                            th scope="col" { "Price" } th scope="col" { "Line total" }
                        } }
                        tbody {
                            @for line in view.lines {
                                tr {
                                    td { (line.product.map_or(line.item.product_id.as_str(), |p| p.product_name.as_str())) }
                                    td { (line.item.quantity.units()) }
                                    td { @if let Some(p) = line.product { (p.price.money()) } }
                                    td { @if let Some(total) = line.total() { (total) } }
                                }
                            }
                        }
                        tfoot { tr { th scope="row" colspan="3" { "Total" } td { (total(view.lines)) } } }
                    }
                    p { a href="/cart" { "Change the cart" } }
                }
                section aria-labelledby="checkout-pay" {
                    h2 #checkout-pay { "Pay" }
                    (card_form(view.key, view.form))
                }
                aside.test-cards aria-labelledby="test-cards" {
                    h2 #test-cards { "Test cards" }
                    p { "Payments are simulated: nothing is charged. Any future expiry and any 3-digit CVC will do." }
                    table {
                        caption.visually-hidden { "Test card numbers and what they do" }
                        thead { tr { th scope="col" { "Card number" } th scope="col" { "Outcome" } } }
                        tbody {
                            @for card in view.test_cards {
                                tr { td { code { (card.number) } } td { (card.outcome) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The card form: swapped for itself, with the refusals beside their fields,
/// when a payment is refused before an order exists.
pub fn card_form(key: &IdempotencyKey, form: &CardForm) -> Markup {
    let field = |name: &'static str, label: &str, input: Markup| {
        let error = form.error(name);
        html! {
            div.field {
                label for=(name) { (label) }
                (input)
                @if let Some(error) = error {
                    p.field-error id=(format!("{name}-error")) role="alert" { (error) }
                }
            }
        }
    };
    let invalid = |name: &str| form.error(name).map(|_| "true");
    let described = |name: &str| form.error(name).map(|_| format!("{name}-error"));
    html! {
        form #checkout-form .card-form method="post" action="/checkout"
            hx-post="/checkout" hx-target="this" hx-swap="outerHTML"
            hx-disabled-elt="find button" novalidate {
            input type="hidden" name="idempotency_key" value=(key.as_str());
            input type="hidden" name="cart" value=(form.cart);
            @if let Some(error) = form.error("form") {
                p.field-error role="alert" { (error) }
            }
            (field("card_number", "Card number", html! {
                input #card_number type="text" name="card_number" inputmode="numeric"
                    autocomplete="cc-number" placeholder="4242 4242 4242 4242" required
                    aria-invalid=[invalid("card_number")] aria-describedby=[described("card_number")];
            }))
            div.expiry {
                (field("exp_month", "Expiry month", html! {
                    input #exp_month type="number" name="exp_month" min="1" max="12"
                        autocomplete="cc-exp-month" value=(form.exp_month) placeholder="MM" required
                        aria-invalid=[invalid("exp_month")] aria-describedby=[described("exp_month")];
                }))
                (field("exp_year", "Expiry year", html! {
                    input #exp_year type="number" name="exp_year" min="2000" max="9999"
                        autocomplete="cc-exp-year" value=(form.exp_year) placeholder="YYYY" required
                        aria-invalid=[invalid("exp_year")] aria-describedby=[described("exp_year")];
                }))
            }
            (field("cvc", "CVC", html! {
                input #cvc type="text" name="cvc" inputmode="numeric" autocomplete="cc-csc"
                    maxlength="4" required
                    aria-invalid=[invalid("cvc")] aria-describedby=[described("cvc")];
            }))
            button type="submit" { "Place order" }
        }
    }
}
