//! Who is asking: the user (token `sub`) and the organisation owning them.
use std::fmt;

/// The longest id we accept from a token, in bytes; ZITADEL ids are ~18 digits.
const MAX_ID_BYTES: usize = 200;

/// Characters that print as nothing: Unicode format characters (zero-width spaces and
/// joiners, bidirectional controls, the byte-order mark, soft hyphen, invisible operators).
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// 1 to 200 bytes of characters that show: no control or invisible characters, and not only
/// whitespace (such ids would be indistinguishable in logs and in the event log).
fn valid_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_ID_BYTES
        && !raw.chars().all(char::is_whitespace)
        && !raw.chars().any(|c| c.is_control() || invisible(c))
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = $what]
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Only ids of 1 to 200 bytes of visible characters.
            pub fn parse(raw: &str) -> Option<Self> {
                valid_id(raw).then(|| Self(raw.to_owned()))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(UserId, "The authenticated user: the token's `sub`.");
id_type!(
    ResourceOwner,
    "The organisation the user belongs to, from the token."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_1_to_200_bytes_of_visible_characters() {
        for good in [
            "69629023906488334",
            "user@example.com",
            "a b",
            &"x".repeat(200),
            "é",
        ] {
            assert!(UserId::parse(good).is_some(), "{good:?}");
        }
        let long = "é".repeat(101); // 202 bytes, 101 characters
        for bad in [
            "",
            " ",
            "\t \u{3000}",
            "a\u{0}b",
            "a\nb",
            "\u{200B}",
            "ab\u{200B}",
            "\u{202E}abc",
            "\u{FEFF}1",
            "a\u{00AD}",
            &"x".repeat(201),
            &long,
        ] {
            assert!(UserId::parse(bad).is_none(), "{bad:?}");
            assert!(ResourceOwner::parse(bad).is_none(), "{bad:?}");
        }
    }
}
