//! Which numbers may get a code at all: numbers that can exist, of a type that receives SMS
//! and does not earn its owner money (premium rate, shared cost), in a region we serve.
//! Against SMS pumping; pure rules on libphonenumber's metadata.
use std::fmt;
use std::str::FromStr;

pub use phonenumber::Type as NumberType;
use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;

use super::{DomainError, PhoneNumber};

/// The international non-geographic calling codes libphonenumber knows (satellite, global
/// networks, universal freephone and premium): numbers that belong to no country.
pub const NON_GEOGRAPHIC_CODES: [u16; 9] = [800, 808, 870, 878, 881, 882, 883, 888, 979];

/// Where a number is: an ISO 3166 region, or a non-geographic calling code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    Geographic(Id),
    NonGeographic(u16),
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Geographic(id) => f.write_str(id.as_ref()),
            Region::NonGeographic(code) => write!(f, "{code}"),
        }
    }
}

impl FromStr for Region {
    type Err = String;

    /// `CH`, `US` (ISO 3166 alpha-2 as libphonenumber knows them) or `881` (a
    /// non-geographic calling code).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(code) = s.parse::<u16>() {
            return NON_GEOGRAPHIC_CODES
                .contains(&code)
                .then_some(Region::NonGeographic(code))
                .ok_or_else(|| format!("`{s}` is not a non-geographic calling code"));
        }
        match Id::from_str(s) {
            Ok(id) if s.len() == 2 => Ok(Region::Geographic(id)),
            _ => Err(format!("`{s}` is not a region code like CH")),
        }
    }
}

/// What libphonenumber says about a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumberFacts {
    /// Valid for its region: a number that can be assigned, not just one that parses.
    pub valid: bool,
    pub kind: NumberType,
    /// Unknown for a number that matches no region's patterns.
    pub region: Option<Region>,
}

impl NumberFacts {
    pub fn of(phone: &PhoneNumber) -> NumberFacts {
        phone.facts()
    }

    /// The facts of a number in E.164 form, parsed again.
    pub(super) fn of_e164(e164: &str) -> NumberFacts {
        // The crate panics on some inputs; a stored E.164 number has parsed before, but a
        // panic here must not take the writer down either.
        match std::panic::catch_unwind(|| phonenumber::parse(None, e164).ok()) {
            Ok(Some(parsed)) => NumberFacts::of_parsed(&parsed),
            _ => NumberFacts {
                valid: false,
                kind: NumberType::Unknown,
                region: None,
            },
        }
    }

    /// The facts of a number libphonenumber has parsed.
    pub(super) fn of_parsed(parsed: &phonenumber::PhoneNumber) -> NumberFacts {
        let country = parsed.country();
        let region = match country.id() {
            Some(id) => Some(Region::Geographic(id)),
            None if NON_GEOGRAPHIC_CODES.contains(&country.code()) => {
                Some(Region::NonGeographic(country.code()))
            }
            None => None,
        };
        let kind = parsed.number_type(&DATABASE);
        // `is_valid` is "the type is known", worked out again on the national number written
        // with its leading zeros; without any, it is the same test on the same digits, so
        // the type (a walk of the country's type patterns) is worked out once.
        let valid = if parsed.national().zeros() == 0 {
            kind != NumberType::Unknown
        } else {
            parsed.is_valid()
        };
        NumberFacts {
            valid,
            kind,
            region,
        }
    }
}

/// The configuration names of the number types, as libphonenumber calls them.
pub const NUMBER_TYPES: [(&str, NumberType); 11] = [
    ("mobile", NumberType::Mobile),
    ("fixed_line", NumberType::FixedLine),
    ("fixed_line_or_mobile", NumberType::FixedLineOrMobile),
    ("voip", NumberType::Voip),
    ("personal_number", NumberType::PersonalNumber),
    ("toll_free", NumberType::TollFree),
    ("premium_rate", NumberType::PremiumRate),
    ("shared_cost", NumberType::SharedCost),
    ("uan", NumberType::Uan),
    ("pager", NumberType::Pager),
    ("voicemail", NumberType::Voicemail),
];

/// Which regions may get codes. A deny entry wins over an allow entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionRules {
    /// Every ISO 3166 region (`*` in the configuration); non-geographic codes only by name.
    pub all_geographic: bool,
    pub allowed: Vec<Region>,
    pub denied: Vec<Region>,
}

impl RegionRules {
    pub fn allows(&self, region: Region) -> bool {
        if self.denied.contains(&region) {
            return false;
        }
        self.allowed.contains(&region)
            || (self.all_geographic && matches!(region, Region::Geographic(_)))
    }
}

/// Which numbers may get codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPolicy {
    pub allowed_types: Vec<NumberType>,
    pub regions: RegionRules,
}

impl Default for DestinationPolicy {
    /// Mobile and fixed-line numbers (fixed lines take SMS as text-to-speech calls; ZITADEL's
    /// own example is one) in every geographic region.
    fn default() -> Self {
        Self {
            allowed_types: vec![
                NumberType::Mobile,
                NumberType::FixedLine,
                NumberType::FixedLineOrMobile,
            ],
            regions: RegionRules {
                all_geographic: true,
                allowed: vec![],
                denied: vec![],
            },
        }
    }
}

/// Which rule refused a send, for the refusal and for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The number cannot exist (`PHONE-so0wa`).
    InvalidNumber,
    NumberType,
    Region,
    /// The per-user throttle (cooldown and rolling window).
    User,
    Destination,
    ClientAddress,
    RegionBreaker,
    GlobalBreaker,
}

impl Rule {
    pub const ALL: [Rule; 8] = [
        Rule::InvalidNumber,
        Rule::NumberType,
        Rule::Region,
        Rule::User,
        Rule::Destination,
        Rule::ClientAddress,
        Rule::RegionBreaker,
        Rule::GlobalBreaker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::InvalidNumber => "invalid_number",
            Rule::NumberType => "number_type",
            Rule::Region => "region",
            Rule::User => "user",
            Rule::Destination => "destination",
            Rule::ClientAddress => "client_address",
            Rule::RegionBreaker => "region_breaker",
            Rule::GlobalBreaker => "global_breaker",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `facts` describe a number codes may go to; its region when they may.
pub fn screen(facts: &NumberFacts, policy: &DestinationPolicy) -> Result<Region, DomainError> {
    let Some(region) = facts.region.filter(|_| facts.valid) else {
        return Err(DomainError::PhoneInvalid);
    };
    if !policy.allowed_types.contains(&facts.kind) {
        return Err(DomainError::NumberRefused(Rule::NumberType));
    }
    if !policy.regions.allows(region) {
        return Err(DomainError::NumberRefused(Rule::Region));
    }
    Ok(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Validity worked out from the type (numbers without leading zeros) is
        /// libphonenumber's own `is_valid`, for any number it parses.
        #[test]
        fn validity_is_libphonenumbers(raw in proptest::prop_oneof![
            "\\+?[0-9 ()-]{1,20}",
            // Countries whose numbers keep a leading 0 (Italy, Côte d'Ivoire, Congo).
            "\\+(39|225|242) ?0[0-9 ]{4,12}",
        ]) {
            // As `PhoneNumber::parse` does: the default region only without a `+`.
            let region = (!raw.starts_with('+')).then_some(Id::CH);
            if let Ok(parsed) = phonenumber::parse(region, &raw) {
                proptest::prop_assert_eq!(NumberFacts::of_parsed(&parsed).valid, parsed.is_valid());
            }
        }
    }

    fn facts(raw: &str) -> NumberFacts {
        NumberFacts::of(&PhoneNumber::parse(raw).unwrap())
    }

    fn region(s: &str) -> Region {
        s.parse().unwrap()
    }

    /// Given a number and the default policy, then this answer; one row per number type and
    /// kind of region, with a number libphonenumber's metadata classifies so.
    #[test]
    fn default_policy_table() {
        use DomainError::{NumberRefused, PhoneInvalid};
        let ok = |r: &str| Ok(region(r));
        let cases: &[(&str, Result<Region, DomainError>, &str)] = &[
            (
                "+41 71 000 00 00",
                ok("CH"),
                "the seed's example, a Swiss fixed line",
            ),
            ("+41 79 123 45 67", ok("CH"), "Swiss mobile"),
            ("+1 415 555 2671", ok("US"), "US fixed line or mobile"),
            ("+44 7911 123456", ok("GG"), "a UK-range mobile of Guernsey"),
            ("+49 30 123456", ok("DE"), "German fixed line"),
            ("+41 75 000 000", Err(PhoneInvalid), "one digit short"),
            (
                "+41 76 000 000",
                Err(PhoneInvalid),
                "too short for the mobile range",
            ),
            ("+41 86 012 34 56", Err(PhoneInvalid), "no such range"),
            (
                "+882 345 678 901",
                Err(PhoneInvalid),
                "not an assigned network",
            ),
            (
                "+41 900 123 456",
                Err(NumberRefused(Rule::NumberType)),
                "premium rate",
            ),
            (
                "+41 840 123 456",
                Err(NumberRefused(Rule::NumberType)),
                "shared cost",
            ),
            (
                "+41 800 123 456",
                Err(NumberRefused(Rule::NumberType)),
                "toll free",
            ),
            (
                "+41 74 012 34 56",
                Err(NumberRefused(Rule::NumberType)),
                "pager",
            ),
            (
                "+1 500 555 0006",
                Err(NumberRefused(Rule::NumberType)),
                "personal number",
            ),
            (
                "+881 612 345 678",
                Err(NumberRefused(Rule::Region)),
                "satellite mobile (Iridium)",
            ),
            (
                "+883 510 012 345",
                Err(NumberRefused(Rule::NumberType)),
                "a global VoIP network",
            ),
        ];
        let policy = DestinationPolicy::default();
        for (raw, want, why) in cases {
            assert_eq!(&screen(&facts(raw), &policy), want, "{raw} ({why})");
        }
    }

    #[test]
    fn number_types_and_regions_are_configurable() {
        let mut policy = DestinationPolicy::default();
        let satellite = facts("+881 612 345 678");
        policy.regions.allowed.push(region("881"));
        assert_eq!(screen(&satellite, &policy), Ok(region("881")));

        let premium = facts("+41 900 123 456");
        policy.allowed_types.push(NumberType::PremiumRate);
        assert_eq!(screen(&premium, &policy), Ok(region("CH")));

        // A deny entry wins, and an allow-list without `*` admits only what it names.
        policy.regions.denied.push(region("CH"));
        assert_eq!(
            screen(&premium, &policy),
            Err(DomainError::NumberRefused(Rule::Region))
        );
        let only_de = DestinationPolicy {
            regions: RegionRules {
                all_geographic: false,
                allowed: vec![region("DE")],
                denied: vec![],
            },
            ..DestinationPolicy::default()
        };
        assert_eq!(screen(&facts("+49 30 123456"), &only_de), Ok(region("DE")));
        assert_eq!(
            screen(&facts("+41 71 000 00 00"), &only_de),
            Err(DomainError::NumberRefused(Rule::Region))
        );
        // Validity comes first, whatever the lists say.
        assert_eq!(
            screen(&facts("+41 75 000 000"), &policy),
            Err(DomainError::PhoneInvalid)
        );
    }

    #[test]
    fn region_codes_parse_from_configuration() {
        assert_eq!(region("CH"), Region::Geographic(Id::CH));
        assert_eq!(region("979"), Region::NonGeographic(979));
        assert_eq!(region("CH").to_string(), "CH");
        assert_eq!(region("882").to_string(), "882");
        for bad in ["ch", "XX", "41", "999", "", "CHE"] {
            assert!(bad.parse::<Region>().is_err(), "{bad:?}");
        }
    }
}
