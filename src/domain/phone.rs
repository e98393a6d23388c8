//! Phone numbers: request-field validation and the E.164 form we store.
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use phonenumber::country;

use super::{DomainError, NumberFacts};

pub const PHONE_MAX_RUNES: usize = 50;
pub const PHONE_LENGTH_MESSAGE: &str =
    "invalid SetMyPhoneRequest.Phone: value length must be between 1 and 50 runes, inclusive";
pub const PHONE_PREFIX_MESSAGE: &str =
    "invalid SetMyPhoneRequest.Phone: value does not have prefix \"+\"";

/// The request-level checks, in the contract's order; the error is the exact message.
pub fn validate_phone_field(raw: &str) -> Result<(), &'static str> {
    let runes = raw.chars().count();
    if runes == 0 || runes > PHONE_MAX_RUNES {
        return Err(PHONE_LENGTH_MESSAGE);
    }
    if !raw.starts_with('+') {
        return Err(PHONE_PREFIX_MESSAGE);
    }
    Ok(())
}

/// A phone number in E.164 form (`+41710000000`). Only `parse` makes one from outside input;
/// deserialising reads back what we stored. `Debug` shows it masked, so a logged event or
/// state never carries it whole.
#[derive(Clone, serde::Serialize)]
#[serde(transparent)]
pub struct PhoneNumber {
    e164: String,
    /// libphonenumber's facts, worked out at most once per number: a Set needs them three
    /// times (screening, the decision, the send counters) and each costs a full parse.
    #[serde(skip)]
    facts: OnceLock<NumberFacts>,
}

impl PartialEq for PhoneNumber {
    fn eq(&self, other: &Self) -> bool {
        self.e164 == other.e164
    }
}

impl Eq for PhoneNumber {}

impl Hash for PhoneNumber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.e164.hash(state);
    }
}

impl PhoneNumber {
    /// libphonenumber rules with CH as the default region; only what does not parse fails.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        // Control characters never belong in a number, and some storage engines refuse them.
        if raw.chars().any(char::is_control) {
            return Err(DomainError::PhoneInvalid);
        }
        let (e164, first) = e164_of(raw).ok_or(DomainError::PhoneInvalid)?;
        // A parse must be a normalisation: what we store and return has to parse back to
        // itself. National parts with leading zeros (`+41 0000 8000`) lose a different number
        // of zeros on each parse; such numbers are refused rather than silently changed.
        // Input already in that form is its own second parse.
        let parsed = if e164 == raw {
            first
        } else {
            let (again, parsed) = e164_of(&e164).ok_or(DomainError::PhoneInvalid)?;
            if again != e164 {
                return Err(DomainError::PhoneInvalid);
            }
            parsed
        };
        Ok(Self {
            e164,
            facts: OnceLock::from(NumberFacts::of_parsed(&parsed)),
        })
    }

    /// What libphonenumber says about this number.
    pub fn facts(&self) -> NumberFacts {
        *self.facts.get_or_init(|| NumberFacts::of_e164(&self.e164))
    }

    pub fn masked(&self) -> String {
        mask_phone(&self.e164)
    }
}

/// The form `parse` stores: `+`, a country code (never starting with 0), the national digits.
fn is_stored_form(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or("");
    (2..=20).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

impl<'de> serde::Deserialize<'de> for PhoneNumber {
    /// Reads back a number `parse` stored: only the E.164 form is checked, not parsed again.
    /// Every stored state and event holds one, so a full parse here (two of libphonenumber's,
    /// the normalisation check) was most of the cost of loading a state; and an update of
    /// libphonenumber's metadata must not turn a user's stored number into damaged data.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let e164 = String::deserialize(deserializer)?;
        if !is_stored_form(&e164) {
            return Err(serde::de::Error::custom("not a number in E.164 form"));
        }
        Ok(PhoneNumber {
            e164,
            facts: OnceLock::new(),
        })
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PhoneNumber").field(&self.masked()).finish()
    }
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.e164
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

/// libphonenumber's E.164 form of `raw` (default region CH), if it parses at all, with the
/// parsed number.
fn e164_of(raw: &str) -> Option<(String, phonenumber::PhoneNumber)> {
    // libphonenumber uses the default region only for a number without a country code. The
    // crate also applies that region's national prefix to numbers with one, so Italy's
    // `+39 06 …` lost its 0 (a different number); a `+` number is parsed by its own code.
    let region = (!raw.starts_with('+')).then_some(country::Id::CH);
    let parsed = std::panic::catch_unwind(|| phonenumber::parse(region, raw))
        .ok()?
        .ok()?;
    Some((e164_form(&parsed), parsed))
}

/// libphonenumber's E.164 form, `+`, the country code and the national number with its
/// leading zeros, written here: its formatter first looks for a national format to use,
/// a walk of the country's patterns that E.164 never uses. A parse only succeeds with a
/// known country code and at least two national digits, so there is always one to write.
fn e164_form(parsed: &phonenumber::PhoneNumber) -> String {
    format!("+{}{}", parsed.country().code(), parsed.national())
}

/// What logs may show of a number: the first three and the last two characters.
pub fn mask_phone(e164: &str) -> String {
    let chars: Vec<char> = e164.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn swiss_number_with_spaces_becomes_e164() {
        let p = PhoneNumber::parse("+41 71 000 00 00").unwrap();
        assert_eq!(p.as_ref(), "+41710000000");
    }

    /// Other countries' numbers keep what their own rules keep: Italy's leading 0 is part
    /// of the number (libphonenumber, and so ZITADEL, store `+390612345678`).
    #[test]
    fn a_country_code_brings_its_own_rules() {
        for (raw, e164) in [
            ("+39 06 1234 5678", "+390612345678"),
            ("+39 333 123 4567", "+393331234567"),
            ("+44 20 7946 0958", "+442079460958"),
            ("+1 784 457 1234", "+17844571234"),
        ] {
            let p = PhoneNumber::parse(raw).unwrap();
            assert_eq!(p.as_ref(), e164, "{raw}");
            assert!(p.facts().valid, "{raw}");
            assert_eq!(PhoneNumber::parse(e164), Ok(p));
        }
    }

    /// A number's facts at Set are the facts it has when read back from storage; parsing
    /// with the default region made them differ for `+17840000` (invalid, then valid).
    #[test]
    fn facts_at_set_are_the_stored_numbers() {
        for raw in [
            "+17840000",
            "+1 784 457 1234",
            "+39 06 1234 5678",
            "+41 79 000 00 00",
        ] {
            let p = PhoneNumber::parse(raw).unwrap();
            assert_eq!(p.facts(), NumberFacts::of_e164(p.as_ref()), "{raw}");
        }
    }

    #[test]
    fn dashes_and_parentheses_are_accepted() {
        let p = PhoneNumber::parse("+1 (415) 555-2671").unwrap();
        assert_eq!(p.as_ref(), "+14155552671");
    }

    #[test]
    fn garbage_does_not_parse() {
        for raw in ["+", "+abc", "+41 71 000 00 00\u{0}", "++", "+41 0000 8000"] {
            assert_eq!(
                PhoneNumber::parse(raw),
                Err(DomainError::PhoneInvalid),
                "{raw:?}"
            );
        }
    }

    /// What `parse` stores (and GET returns) parses back to itself, or setting the number
    /// GET returned would be taken for a new number. The fuzzer's inputs: national parts
    /// with leading zeros, each passing the request checks, once lost a different number of
    /// zeros on each parse (`+4100008000` → `+41008000` → `+418000`).
    #[test]
    fn parsing_a_stored_phone_gives_the_same_phone() {
        for raw in [
            "+4100008000",
            "+41 0000 8000",
            "+41 00 00V000",
            "+1000012345",
            "+410008",
            "+41 0008",
            "+10008",
            "+440008",
        ] {
            assert_eq!(validate_phone_field(raw), Ok(()), "{raw:?}");
            // Refusing such a number is a correct answer too.
            if let Ok(stored) = PhoneNumber::parse(raw) {
                assert_eq!(
                    PhoneNumber::parse(stored.as_ref()),
                    Ok(stored.clone()),
                    "{raw:?} is stored as {stored}"
                );
            }
        }
    }

    #[test]
    fn deserialising_reads_back_what_parse_stored() {
        let p = PhoneNumber::parse("+41 71 000 00 00").unwrap();
        let stored = serde_json::to_string(&p).unwrap();
        assert_eq!(stored, r#""+41710000000""#);
        let back = serde_json::from_str::<PhoneNumber>(&stored).unwrap();
        assert_eq!(back, p);
        // Worked out again from the stored form, the facts are the same.
        assert_eq!(back.facts(), p.facts());
        assert!(p.facts().valid);
        // Only the stored form reads back: anything else was not written by `parse`.
        for bad in [
            r#""+41 71 000 00 00""#,
            r#""+41 ABC""#,
            r#""""#,
            r#""+""#,
            r#""+0041710000000""#,
            r#""41710000000""#,
            r#""+412345678901234567890""#,
            "41710000000",
        ] {
            assert!(
                serde_json::from_str::<PhoneNumber>(bad).is_err(),
                "{bad} deserialised"
            );
        }
    }

    #[test]
    fn debug_shows_only_the_masked_number() {
        let p = PhoneNumber::parse("+41 71 123 45 67").unwrap();
        let shown = format!("{p:?}");
        assert!(!shown.contains("+41711234567"), "{shown}");
        assert!(shown.contains(&p.masked()), "{shown}");
        // And so do the types that carry one.
        let event = format!(
            "{:?}",
            super::super::Event::PhoneChanged { phone: p.clone() }
        );
        let state = format!(
            "{:?}",
            super::super::PhoneState {
                phone: Some(p),
                ..Default::default()
            }
        );
        for shown in [event, state] {
            assert!(!shown.contains("1234567"), "{shown}");
            assert!(shown.contains("+41*******67"), "{shown}");
        }
    }

    #[test]
    fn masking_hides_the_middle() {
        assert_eq!(mask_phone("+41710000000"), "+41*******00");
        assert!(!mask_phone("+41711234567").contains("1234"));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(raw in "\\PC{0,60}") {
            let _ = PhoneNumber::parse(&raw);
        }

        /// The stored form parses back to itself (input already in that form skips the
        /// second parse), and with the facts a number read back from storage gets: the
        /// default region once made them differ (`+17840000`).
        #[test]
        fn normalising_twice_changes_nothing(raw in "\\+[0-9 ()-]{1,20}") {
            // Leading zeros included: the fuzzer found those broke idempotence.
            if let Ok(first) = PhoneNumber::parse(&raw) {
                let again = PhoneNumber::parse(first.as_ref());
                prop_assert_eq!(again.as_ref().map(PhoneNumber::facts), Ok(NumberFacts::of_e164(first.as_ref())));
                prop_assert_eq!(again, Ok(first));
            }
        }

        /// Whatever `parse` makes reads back from storage as the same number.
        #[test]
        fn every_parsed_number_reads_back(raw in "\\+[0-9 ()-]{1,20}") {
            if let Ok(parsed) = PhoneNumber::parse(&raw) {
                let stored = serde_json::to_string(&parsed).unwrap();
                prop_assert_eq!(serde_json::from_str::<PhoneNumber>(&stored).ok(), Some(parsed));
            }
        }

        #[test]
        fn valid_numbers_round_trip(n in 0u32..10_000_000) {
            let raw = format!("+41 79 {:03} {:02} {:02}", n / 10_000 % 1000, n / 100 % 100, n % 100);
            let parsed = PhoneNumber::parse(&raw).unwrap();
            let digits: String = raw.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
            prop_assert_eq!(parsed.as_ref(), digits.as_str());
        }

        /// The E.164 form written here is the one libphonenumber's formatter writes, for
        /// every number the library parses (leading zeros and every country code included).
        #[test]
        fn e164_form_is_the_formatters(raw in "\\+?[0-9 ()-]{1,20}", default_ch in any::<bool>()) {
            let region = default_ch.then_some(country::Id::CH);
            if let Ok(parsed) = phonenumber::parse(region, &raw) {
                let theirs = std::panic::catch_unwind(|| {
                    parsed.format().mode(phonenumber::Mode::E164).to_string()
                });
                prop_assert_eq!(Some(e164_form(&parsed)), theirs.ok());
            }
        }

        #[test]
        fn field_length_counts_unicode_scalars(n in 1usize..=50, ch in any::<char>()) {
            let raw: String = std::iter::once('+').chain(std::iter::repeat_n(ch, n - 1)).collect();
            prop_assert!(validate_phone_field(&raw).is_ok());
            let long: String = std::iter::once('+').chain(std::iter::repeat_n(ch, n + 50)).collect();
            prop_assert_eq!(validate_phone_field(&long), Err(PHONE_LENGTH_MESSAGE));
        }
    }
}
