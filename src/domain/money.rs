use std::fmt;

use serde::Serialize;

use super::ParseError;

/// An amount in minor units (cents). Never a float: totals are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_cents(cents: i64) -> Money {
        Money(cents)
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    /// `None` when the product would not fit in an `i64`; callers bound their
    /// inputs so that this never happens for parsed prices and quantities.
    pub fn checked_mul(self, times: u32) -> Option<Money> {
        self.0.checked_mul(i64::from(times)).map(Money)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// An amount typed in dollars, as people type prices: "12", "12.5", "12.50" or
    /// "$12.50", blanks around allowed. At most two decimals, no sign, no thousands
    /// separators; an amount too large for cents in an `i64` is refused.
    pub fn parse_dollars(raw: &str) -> Result<Money, ParseError> {
        let invalid = || ParseError::new("price must be an amount in dollars, like 12.50");
        let raw = raw.trim().trim_start_matches('$');
        let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > 2
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let whole: i64 = whole.parse().map_err(|_| invalid())?;
        let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| invalid())?;
        whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(cents))
            .map(Money)
            .ok_or_else(invalid)
    }
}

impl fmt::Display for Money {
    /// `$12.34`: the shop's one currency, formatted for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}${}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cents_for_people() {
        assert_eq!(Money::from_cents(1234).to_string(), "$12.34");
        assert_eq!(Money::from_cents(5).to_string(), "$0.05");
        assert_eq!(Money::from_cents(-250).to_string(), "-$2.50");
    }

    #[test]
    fn multiplication_is_checked() {
        assert_eq!(
            Money::from_cents(250).checked_mul(3),
            Some(Money::from_cents(750))
        );
        assert_eq!(Money::from_cents(i64::MAX).checked_mul(2), None);
    }

    #[test]
    fn amounts_are_typed_in_dollars() {
        let cents = |raw| Money::parse_dollars(raw).map(Money::cents);
        assert_eq!(cents("12.50"), Ok(1250));
        assert_eq!(cents("12.5"), Ok(1250));
        assert_eq!(cents("$3"), Ok(300));
        assert_eq!(cents(" 0.07 "), Ok(7));
        assert_eq!(cents("0"), Ok(0));
        for bad in [
            "",
            "abc",
            "1.234",
            "-2",
            "1,50",
            ".5",
            "99999999999999999999",
        ] {
            assert!(
                Money::parse_dollars(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
