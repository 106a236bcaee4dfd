use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::{Money, ParseError, raw_conversions};

/// A client-chosen product key: 1 to 64 ASCII letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductId(String);

impl ProductId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: impl Into<String>) -> Result<ProductId, ParseError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(ParseError::new("product_id must not be empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(ParseError::new(format!(
                "product_id must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ParseError::new(
                "product_id may contain only letters, digits, '-' and '_'",
            ));
        }
        Ok(ProductId(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

raw_conversions!(ProductId, String, |id| id.0);

impl std::fmt::Display for ProductId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A product's display name: trimmed, 1 to 200 characters, in any script.
///
/// A name must show itself: it holds at least one visible character (as
/// `is_visible` below tells), and no control characters or Unicode format characters
/// (general category `Cf`: zero-width spaces and joiners, the bidi embedding,
/// override, isolate and mark characters, soft hyphens, tag characters...),
/// which are invisible and can reorder or hide the text around them. Anything
/// else is allowed (it is escaped wherever it is shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductName(String);

impl ProductName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: impl Into<String>) -> Result<ProductName, ParseError> {
        let raw: String = raw.into();
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new("product_name must not be empty"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::new(format!(
                "product_name must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ParseError::new(
                "product_name must not contain control characters",
            ));
        }
        if trimmed
            .chars()
            .any(|c| c.general_category() == GeneralCategory::Format)
        {
            return Err(ParseError::new(
                "product_name must not contain invisible formatting or direction characters",
            ));
        }
        if !trimmed.chars().any(is_visible) {
            return Err(ParseError::new(
                "product_name must contain a visible character",
            ));
        }
        Ok(ProductName(trimmed.to_owned()))
    }

    /// A name as stored. Names stored before the rule on invisible characters
    /// may break it: they are shown without their format characters rather
    /// than refused, so that an old catalog still loads.
    pub fn stored(raw: String) -> Result<ProductName, ParseError> {
        ProductName::parse(raw.as_str()).or_else(|refused| {
            let shown: String = raw
                .chars()
                .filter(|&c| c.general_category() != GeneralCategory::Format)
                .collect();
            ProductName::parse(shown).map_err(|_| refused)
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

raw_conversions!(ProductName, String, |name| name.0);

/// Letters and symbols that are drawn as blank space, though their categories
/// say otherwise: the Hangul fillers, the blank Braille pattern, the Khmer
/// inherent vowel AA and the musical null notehead.
const BLANK_GLYPHS: [char; 7] = [
    '\u{115F}',
    '\u{1160}',
    '\u{3164}',
    '\u{FFA0}',
    '\u{2800}',
    '\u{17B5}',
    '\u{1D159}',
];

/// Whether a character, shown on its own, leaves a mark: not whitespace, not a
/// control, format, surrogate, private-use or unassigned code point, not a mark
/// that only combines with the character before it (`Mn`, `Me`), and not one of
/// the [`BLANK_GLYPHS`].
fn is_visible(c: char) -> bool {
    use GeneralCategory as G;
    !c.is_whitespace()
        && !BLANK_GLYPHS.contains(&c)
        && !matches!(
            c.general_category(),
            G::SpaceSeparator
                | G::LineSeparator
                | G::ParagraphSeparator
                | G::Control
                | G::Format
                | G::Surrogate
                | G::PrivateUse
                | G::Unassigned
                | G::NonspacingMark
                | G::EnclosingMark
        )
}

/// A unit price in cents: at least 1 cent, at most $1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Price(Money);

impl Price {
    pub const MAX_CENTS: i64 = 100_000_000;

    pub fn parse(cents: i64) -> Result<Price, ParseError> {
        if !(1..=Self::MAX_CENTS).contains(&cents) {
            return Err(ParseError::new(format!(
                "price must be a whole number of cents between 1 and {}",
                Self::MAX_CENTS
            )));
        }
        Ok(Price(Money::from_cents(cents)))
    }

    pub fn money(self) -> Money {
        self.0
    }
}

raw_conversions!(Price, i64, |price| price.0.cents());

/// Units on hand: 0 to one billion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Stock(i64);

impl Stock {
    pub const MAX: i64 = 1_000_000_000;

    pub fn parse(units: i64) -> Result<Stock, ParseError> {
        if !(0..=Self::MAX).contains(&units) {
            return Err(ParseError::new(format!(
                "stock must be a whole number between 0 and {}",
                Self::MAX
            )));
        }
        Ok(Stock(units))
    }

    pub fn units(self) -> i64 {
        self.0
    }

    /// A stock level as stored, computed rather than entered: a release on top of
    /// a maximal stock may pass `MAX`, so only the schema's `stock >= 0` holds.
    pub fn saturating(units: i64) -> Stock {
        Stock(units.max(0))
    }
}

raw_conversions!(Stock, i64, |stock| stock.0);

/// A product as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub product_id: ProductId,
    pub product_name: ProductName,
    pub price: Price,
    pub stock: Stock,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_are_short_plain_keys() {
        assert!(ProductId::parse("widget-01_B").is_ok());
        assert!(ProductId::parse("").is_err());
        assert!(ProductId::parse("a".repeat(65)).is_err());
        assert!(ProductId::parse("a".repeat(64)).is_ok());
        for bad in [
            "has space",
            "slash/",
            "dot.",
            "ümlaut",
            "semi;colon",
            "quote'",
        ] {
            assert!(ProductId::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(ProductName::parse("  Tea  ").map(|n| n.0), Ok("Tea".into()));
        assert!(ProductName::parse("   ").is_err());
        assert!(ProductName::parse("x".repeat(201)).is_err());
        assert!(ProductName::parse("line\nbreak").is_err());
        assert!(ProductName::parse("<script>alert(1)</script>").is_ok());
    }

    #[test]
    fn names_in_any_script_are_accepted() {
        for good in [
            "Tea",
            "Café",
            "Cafe\u{301}",
            "日本茶",
            "Кофе",
            "قهوة عربية",
            "קפה",
            "हिन्दी चाय",
            "☕ Mug",
            "❤\u{FE0F} Mug",
            "Ceramic mug, 350 ml — blue",
            "№ 5",
            "x",
        ] {
            assert_eq!(
                ProductName::parse(good).map(String::from).as_deref(),
                Ok(good),
                "{good:?} should be accepted"
            );
        }
    }

    const INVISIBLE: &str = "product_name must contain a visible character";
    const FORMATTING: &str =
        "product_name must not contain invisible formatting or direction characters";

    #[test]
    fn names_that_hide_themselves_are_refused() {
        let cases = [
            // Nothing a reader could see.
            ("\u{3164}", INVISIBLE),
            ("\u{3164}\u{3164}\u{3164}", INVISIBLE),
            ("\u{115F}\u{1160}", INVISIBLE),
            ("\u{FFA0}", INVISIBLE),
            ("\u{2800}", INVISIBLE),
            ("\u{2800} \u{3164}", INVISIBLE),
            ("\u{17B5}\u{1D159}", INVISIBLE),
            ("\u{301}", INVISIBLE),
            (" \u{301}\u{308} ", INVISIBLE),
            ("\u{20DD}", INVISIBLE),
            ("\u{FE0F}", INVISIBLE),
            ("\u{E000}", INVISIBLE),
            ("\u{F0000}", INVISIBLE),
            ("\u{378}", INVISIBLE),
            ("\u{3000}\u{3164}\u{A0}", INVISIBLE),
            // Zero-width and other format characters, even beside visible text.
            ("\u{200B}\u{200B}", FORMATTING),
            ("Te\u{200B}a", FORMATTING),
            ("Te\u{200C}a", FORMATTING),
            ("👨\u{200D}👩", FORMATTING),
            ("\u{2060}Tea", FORMATTING),
            ("Tea\u{2061}", FORMATTING),
            ("Tea\u{2062}", FORMATTING),
            ("Tea\u{2063}", FORMATTING),
            ("Tea\u{2064}", FORMATTING),
            ("\u{FEFF}Tea", FORMATTING),
            ("Te\u{AD}a", FORMATTING),
            ("Tea\u{E0041}\u{E007F}", FORMATTING),
            ("\u{180E}", FORMATTING),
            // Direction controls: they reorder what is shown around them.
            ("Mug\u{202E}gpj.exe", FORMATTING),
            ("\u{202A}Tea", FORMATTING),
            ("\u{202B}Tea", FORMATTING),
            ("\u{202C}Tea", FORMATTING),
            ("\u{202D}Tea", FORMATTING),
            ("\u{2066}Tea\u{2069}", FORMATTING),
            ("\u{2067}Tea", FORMATTING),
            ("\u{2068}Tea", FORMATTING),
            ("Tea\u{200E}", FORMATTING),
            ("Tea\u{200F}", FORMATTING),
            ("Tea\u{61C}", FORMATTING),
        ];
        for (bad, message) in cases {
            assert_eq!(
                ProductName::parse(bad).map_err(|e| e.to_string()),
                Err(message.to_owned()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn prices_and_stock_have_sane_bounds() {
        assert!(Price::parse(0).is_err());
        assert!(Price::parse(-1).is_err());
        assert!(Price::parse(1).is_ok());
        assert!(Price::parse(Price::MAX_CENTS + 1).is_err());
        assert!(Stock::parse(-1).is_err());
        assert!(Stock::parse(0).is_ok());
        assert!(Stock::parse(Stock::MAX + 1).is_err());
    }

    #[test]
    fn a_name_stored_before_the_rule_loads_without_its_format_characters() {
        let old = "Mug \u{202E}gum".to_owned();
        assert!(ProductName::parse(old.as_str()).is_err());
        assert_eq!(
            ProductName::stored(old).map(|n| n.0),
            Ok("Mug gum".to_owned())
        );
        assert!(ProductName::stored("\u{200B}".to_owned()).is_err());
    }
}
