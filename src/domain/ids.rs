//! Who is asking: the user (token `sub`) and the organisation owning them.
use std::fmt;

/// The longest id we accept from a token; ZITADEL ids are ~18 digits.
const MAX_ID_LEN: usize = 200;

fn valid_id(raw: &str) -> bool {
    !raw.is_empty() && raw.chars().count() <= MAX_ID_LEN && !raw.chars().any(char::is_control)
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = $what]
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Only non-empty ids of at most 200 characters without control characters.
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
