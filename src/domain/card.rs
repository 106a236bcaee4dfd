//! A payment card as a shopper types it, parsed at the edge. The full number and
//! the CVC live only as long as the request that carries them: they are handed to
//! the payment provider, which answers a [`PaymentMethod`] (brand, last four
//! digits, and its own token), and that is all the shop keeps. Neither value can
//! be printed: their `Debug` hides them, and they have no `Display` or
//! `Serialize`.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::ParseError;

/// A card number: 12 to 19 digits that pass the Luhn check. Spaces between
/// digits are allowed as typed, and dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn parse(raw: &str) -> Result<CardNumber, ParseError> {
        let digits: String = raw.chars().filter(|c| *c != ' ').collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::new(
                "card_number must be 12 to 19 digits (spaces allowed)",
            ));
        }
        if !luhn(&digits) {
            return Err(ParseError::new(
                "card_number is not a valid card number (its check digit is wrong)",
            ));
        }
        Ok(CardNumber(digits))
    }

    /// The digits, for the payment provider alone.
    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn last4(&self) -> String {
        self.0[self.0.len() - 4..].to_owned()
    }

    /// The card network, from the number's first digits.
    pub fn brand(&self) -> CardBrand {
        let prefix = |n: usize| self.0[..n].parse::<u32>().unwrap_or(0);
        match () {
            () if self.0.starts_with('4') => CardBrand::Visa,
            () if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) => {
                CardBrand::Mastercard
            }
            () if matches!(prefix(2), 34 | 37) => CardBrand::Amex,
            () if self.0.starts_with("6011") || self.0.starts_with("65") => CardBrand::Discover,
            () => CardBrand::Other,
        }
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(…{})", self.last4())
    }
}

/// The Luhn check: doubling every second digit from the right, the digit sum
/// is a multiple of ten.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match (!i.is_multiple_of(2), d * 2) {
                (true, doubled) if doubled > 9 => doubled - 9,
                (true, doubled) => doubled,
                (false, _) => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardBrand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    /// A valid number of a network the shop does not name.
    #[serde(rename = "card")]
    Other,
}

impl CardBrand {
    pub fn as_str(self) -> &'static str {
        match self {
            CardBrand::Visa => "visa",
            CardBrand::Mastercard => "mastercard",
            CardBrand::Amex => "amex",
            CardBrand::Discover => "discover",
            CardBrand::Other => "card",
        }
    }

    /// As people write it.
    pub fn label(self) -> &'static str {
        match self {
            CardBrand::Visa => "Visa",
            CardBrand::Mastercard => "Mastercard",
            CardBrand::Amex => "American Express",
            CardBrand::Discover => "Discover",
            CardBrand::Other => "Card",
        }
    }
}

/// The month a card expires: it is good through that month's last day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    month: u32,
    year: i32,
}

impl Expiry {
    /// A month (1 to 12) and a four-digit year, refused when the month is past
    /// on `today`. The field named in an error is the one at fault.
    pub fn parse(
        month: i64,
        year: i64,
        today: NaiveDate,
    ) -> Result<Expiry, (&'static str, ParseError)> {
        let month = u32::try_from(month)
            .ok()
            .filter(|m| (1..=12).contains(m))
            .ok_or(("exp_month", ParseError::new("exp_month must be 1 to 12")))?;
        let year = i32::try_from(year)
            .ok()
            .filter(|y| (2000..=9999).contains(y))
            .ok_or((
                "exp_year",
                ParseError::new("exp_year must be a four-digit year"),
            ))?;
        if (year, month) < (today.year(), today.month()) {
            return Err((
                "exp_year",
                ParseError::new("the card has expired (exp_month/exp_year is in the past)"),
            ));
        }
        Ok(Expiry { month, year })
    }
}

/// A card's security code: 3 or 4 digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Cvc(String);

impl Cvc {
    pub fn parse(raw: &str) -> Result<Cvc, ParseError> {
        if matches!(raw.len(), 3 | 4) && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Cvc(raw.to_owned()))
        } else {
            Err(ParseError::new("cvc must be 3 or 4 digits"))
        }
    }
}

impl fmt::Debug for Cvc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvc(***)")
    }
}

/// A card as the shopper gave it, valid on the day it was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub number: CardNumber,
    pub expiry: Expiry,
    pub cvc: Cvc,
}

/// How an order is paid, as the shop keeps it: what the shopper may be shown
/// (brand, last four digits) and the provider's token for the card, which is
/// no card data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub brand: CardBrand,
    pub last4: String,
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    #[test]
    fn numbers_pass_the_luhn_check_with_spaces_as_typed() {
        for good in [
            "4242 4242 4242 4242",
            "4242424242424242",
            "4000 0000 0000 0002",
            "4000000000009995",
            "4000000000000119",
            "4000000000001976",
            "5555 5555 5555 4444",
            "3782 822463 10005",
        ] {
            assert!(CardNumber::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "4242 4242 4242 4241",
            "",
            "4242",
            "4242-4242-4242-4242",
            "abcd abcd abcd abcd",
            "42424242424242424242",
        ] {
            assert!(CardNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_number_tells_its_brand_and_last_four_and_nothing_more() {
        let visa = CardNumber::parse("4242 4242 4242 4242").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (visa.brand(), visa.last4().as_str()),
            (CardBrand::Visa, "4242")
        );
        let mc = CardNumber::parse("5555555555554444").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mc.brand(), CardBrand::Mastercard);
        let amex = CardNumber::parse("378282246310005").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(amex.brand(), CardBrand::Amex);
        assert_eq!(format!("{visa:?}"), "CardNumber(…4242)");
        let cvc = Cvc::parse("123").unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{cvc:?}").contains("123"));
    }

    #[test]
    fn a_card_is_good_through_its_expiry_month() {
        let today = day(2026, 12, 2);
        assert!(Expiry::parse(12, 2026, today).is_ok());
        assert!(Expiry::parse(1, 2031, today).is_ok());
        for (month, year, field) in [
            (11, 2026, "exp_year"),
            (13, 2030, "exp_month"),
            (0, 2030, "exp_month"),
            (5, 31, "exp_year"),
        ] {
            let refused = Expiry::parse(month, year, today).map_err(|e| e.0);
            assert_eq!(refused, Err(field), "{month}/{year}");
        }
    }

    #[test]
    fn a_cvc_is_three_or_four_digits() {
        assert!(Cvc::parse("123").is_ok());
        assert!(Cvc::parse("1234").is_ok());
        for bad in ["12", "12345", "12a", " 123", ""] {
            assert!(Cvc::parse(bad).is_err(), "{bad:?}");
        }
    }
}
