use std::time::{SystemTime, UNIX_EPOCH};

use uuid::{Builder, Uuid};

/// A fresh id for a record the shop creates (an order, a payment): a UUIDv7 whose
/// 74 bits after the timestamp (`rand_a` and `rand_b`) are all drawn from a
/// cryptographically secure generator.
///
/// The rule: an id carries at least 64 bits that nobody can derive from another
/// id (74 here), because knowing one order's id must not let anyone reach the
/// next one. The 48-bit millisecond timestamp in front is what makes ids sort by
/// creation time; ids of the same millisecond sort at random.
///
/// Not `Uuid::now_v7()`: it fills the top 42 of those 74 bits with a counter
/// that counts up by one within a millisecond, so ids placed together share all
/// but 32 random bits and differ by one step from each other.
pub(crate) fn unpredictable_v7() -> Uuid {
    // A clock set before 1970 gives the epoch: ids stay valid and unpredictable,
    // only their order suffers, as it would with any clock that wrong.
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let random_bytes: [u8; 10] = rand::random();
    Builder::from_unix_timestamp_millis(millis, &random_bytes).into_uuid()
}

/// What every UUID newtype has: `parse` (refusing with `$refusal`),
/// `from_uuid`, `as_uuid`, and a `Display` of the bare UUID.
macro_rules! uuid_newtype {
    ($type:ident, $refusal:literal) => {
        impl $type {
            pub fn parse(raw: &str) -> Result<$type, $crate::domain::ParseError> {
                uuid::Uuid::parse_str(raw)
                    .map($type)
                    .map_err(|_| $crate::domain::ParseError::new($refusal))
            }

            pub fn from_uuid(uuid: uuid::Uuid) -> $type {
                $type(uuid)
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }
    };
}
pub(crate) use uuid_newtype;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use uuid::Version;

    use super::super::{OrderId, PaymentId};

    /// How many ids each check draws, in one tight loop.
    const IDS: usize = 2_000;
    const RAND_A_VALUES: usize = 1 << 12;

    struct Fields {
        millis: u64,
        /// The 12 bits after the version.
        rand_a: u16,
        /// `rand_a` followed by the 62 bits after the variant: the 74 bits that
        /// must be unpredictable.
        random: u128,
    }

    fn fields(id: uuid::Uuid) -> Fields {
        let bits = id.as_u128();
        let rand_a = ((bits >> 64) & 0x0FFF) as u16;
        let rand_b = bits & ((1 << 62) - 1);
        Fields {
            millis: (bits >> 80) as u64,
            rand_a,
            random: (u128::from(rand_a) << 62) | rand_b,
        }
    }

    /// The checks, for any generator. Each is one that `Uuid::now_v7()` fails
    /// every time (its ids of one millisecond share `rand_a` and differ by
    /// 2^32 plus at most 2^32 in the 74 bits), and that 74 random bits fail with
    /// a probability too small to ever be seen:
    ///
    /// - two ids of the same millisecond, one after the other, differ by less
    ///   than 2^34 in their 74 random bits: 2^-39 a pair, under 2^-28 a run;
    /// - `rand_a` takes fewer than 1,000 values over 2,000 ids: about 1,580
    ///   are expected, with a standard deviation under 15;
    /// - `rand_a` goes down between fewer than a quarter of the same-millisecond
    ///   pairs, of which there are at least 1,000: each pair goes down with a
    ///   probability just under 1/2, so by Hoeffding's bound this is below e^-125.
    fn assert_unpredictable(what: &str, generate: impl Fn() -> uuid::Uuid) {
        let ids: Vec<Fields> = (0..IDS).map(|_| fields(generate())).collect();

        let same_millisecond: Vec<(&Fields, &Fields)> = ids
            .iter()
            .zip(ids.iter().skip(1))
            .filter(|(a, b)| a.millis == b.millis)
            .collect();
        // A tight loop makes 2,000 ids in well under a millisecond of CPU time;
        // 1,000 millisecond boundaries between them would take a whole second.
        assert!(
            same_millisecond.len() >= IDS / 2,
            "{what}: only {} pairs of ids share a millisecond",
            same_millisecond.len()
        );

        for (a, b) in &same_millisecond {
            let step = a.random.abs_diff(b.random);
            assert!(
                step >= 1 << 34,
                "{what}: ids of one millisecond differ by a small step ({step}) \
                 in their random bits: {:x} then {:x}",
                a.random,
                b.random
            );
        }

        let rand_a_values: HashSet<u16> = ids.iter().map(|f| f.rand_a).collect();
        assert!(
            rand_a_values.len() >= 1_000,
            "{what}: rand_a took {} of {RAND_A_VALUES} values over {IDS} ids",
            rand_a_values.len()
        );

        let down = same_millisecond
            .iter()
            .filter(|(a, b)| b.rand_a < a.rand_a)
            .count();
        assert!(
            down * 4 >= same_millisecond.len(),
            "{what}: rand_a went down in only {down} of {} same-millisecond pairs: \
             it counts up within a millisecond",
            same_millisecond.len()
        );
    }

    #[test]
    fn order_ids_carry_74_unpredictable_bits() {
        assert_unpredictable("order ids", || OrderId::generate().as_uuid());
    }

    #[test]
    fn payment_ids_carry_74_unpredictable_bits() {
        assert_unpredictable("payment ids", || PaymentId::generate().as_uuid());
    }

    #[test]
    fn ids_are_version_7_and_sort_by_their_millisecond() {
        let first = OrderId::generate();
        std::thread::sleep(Duration::from_millis(5));
        let second = OrderId::generate();

        assert_eq!(first.as_uuid().get_version(), Some(Version::SortRand));
        assert_eq!(
            first.as_uuid().get_variant(),
            uuid::Variant::RFC4122,
            "the variant bits are set"
        );
        assert!(first < second, "{first} was made before {second}");
        assert_eq!(
            PaymentId::generate().as_uuid().get_version(),
            Some(Version::SortRand)
        );
    }
}
