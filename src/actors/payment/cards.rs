//! The simulated provider's cards. A card is handed to the provider once, when
//! its order is placed, and the provider answers a token: the shop keeps that
//! token with the order (and the brand and last four digits to show), never the
//! number. What a charge then does is the token's behaviour, as a real
//! provider's test cards behave: documented in the README's table.

use crate::domain::{Card, PaymentMethod};

/// What charging a card does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Behaviour {
    /// The charge succeeds.
    Succeeds,
    /// The provider declines it, saying why.
    Declines(&'static str),
    /// The provider fails with a passing error on the first attempt for an
    /// order, then charges.
    FailsOnce,
    /// The provider charges on the first attempt, but its answer never comes:
    /// the charge times out, and the next attempt finds the charge.
    LosesAnswerOnce,
}

/// The test cards: (number, token, behaviour). Any other valid number succeeds.
const TEST_CARDS: [(&str, &str, Behaviour); 4] = [
    (
        "4000000000000002",
        "tok_chargeDeclined",
        Behaviour::Declines("card declined"),
    ),
    (
        "4000000000009995",
        "tok_chargeDeclinedInsufficientFunds",
        Behaviour::Declines("insufficient funds"),
    ),
    (
        "4000000000000119",
        "tok_chargeProcessingErrorOnce",
        Behaviour::FailsOnce,
    ),
    (
        "4000000000001976",
        "tok_chargeTimeoutOnce",
        Behaviour::LosesAnswerOnce,
    ),
];

/// The test cards as a person trying the shop reads them: the number as it is
/// printed on a card, and what paying with it does.
pub fn test_cards() -> Vec<(String, String)> {
    let spaced = |digits: &str| {
        let groups: Vec<&str> = (0..digits.len())
            .step_by(4)
            .map(|i| &digits[i..(i + 4).min(digits.len())])
            .collect();
        groups.join(" ")
    };
    let others = TEST_CARDS.iter().map(|&(digits, _, behaviour)| {
        let outcome = match behaviour {
            Behaviour::Succeeds => "Paid".to_owned(),
            Behaviour::Declines(reason) => format!("Declined: {reason}"),
            Behaviour::FailsOnce => {
                "The provider fails once; the payment is retried and succeeds".to_owned()
            }
            Behaviour::LosesAnswerOnce => {
                "The provider's answer is lost; the charge is found and the order confirmed"
                    .to_owned()
            }
        };
        (spaced(digits), outcome)
    });
    let plain = (
        spaced("4242424242424242"),
        "Paid (as is any other valid number)".to_owned(),
    );
    std::iter::once(plain).chain(others).collect()
}

/// The token of any card that is not a test card with a behaviour of its own.
const SUCCEEDS: &str = "tok_card";

/// The provider's answer for a card: all the shop may keep of it.
pub fn tokenize(card: &Card) -> PaymentMethod {
    let number = &card.number;
    let token = (TEST_CARDS.iter())
        .find(|(digits, ..)| *digits == number.digits())
        .map_or(SUCCEEDS, |&(_, token, _)| token);
    PaymentMethod {
        brand: number.brand(),
        last4: number.last4(),
        token: token.to_owned(),
    }
}

/// What charging the card behind `token` does. A token this provider never
/// gave (none is stored without it) charges as a plain card.
pub(super) fn behaviour(token: &str) -> Behaviour {
    (TEST_CARDS.iter())
        .find(|(_, known, _)| *known == token)
        .map_or(Behaviour::Succeeds, |&(.., behaviour)| behaviour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CardBrand, CardNumber, Cvc, Expiry};

    fn card(number: &str) -> Card {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
        Card {
            number: CardNumber::parse(number).unwrap_or_else(|e| panic!("{e}")),
            expiry: Expiry::parse(12, 2031, today).unwrap_or_else(|e| panic!("{e:?}")),
            cvc: Cvc::parse("123").unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn each_test_card_has_its_behaviour_and_others_succeed() {
        let of = |number| behaviour(&tokenize(&card(number)).token);
        assert_eq!(of("4242 4242 4242 4242"), Behaviour::Succeeds);
        assert_eq!(of("5555 5555 5555 4444"), Behaviour::Succeeds);
        assert_eq!(
            of("4000 0000 0000 0002"),
            Behaviour::Declines("card declined")
        );
        assert_eq!(
            of("4000 0000 0000 9995"),
            Behaviour::Declines("insufficient funds")
        );
        assert_eq!(of("4000 0000 0000 0119"), Behaviour::FailsOnce);
        assert_eq!(of("4000 0000 0000 1976"), Behaviour::LosesAnswerOnce);
    }

    #[test]
    fn the_token_holds_no_card_data() {
        for (number, ..) in
            TEST_CARDS
                .iter()
                .chain([&("4242424242424242", "", Behaviour::Succeeds)])
        {
            let method = tokenize(&card(number));
            assert!(!method.token.contains(&number[4..]), "{method:?}");
            assert_eq!(method.last4, number[number.len() - 4..]);
            assert_eq!(method.brand, CardBrand::Visa);
        }
    }
}
