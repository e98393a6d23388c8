//! Verification codes: drawn without bias from the OS CSPRNG, stored only as a keyed hash.
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const CODE_MAX_RUNES: usize = 200;
pub const CODE_LENGTH_MESSAGE: &str =
    "invalid VerifyMyPhoneRequest.Code: value length must be between 1 and 200 runes, inclusive";

/// A code as the user typed it, length-checked (1 to 200 Unicode scalar values).
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationCode(String);

impl VerificationCode {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let runes = raw.chars().count();
        if runes == 0 || runes > CODE_MAX_RUNES {
            return Err(CODE_LENGTH_MESSAGE);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

// Codes never reach logs, not even through a stray `{:?}`.
impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationCode(***)")
    }
}

/// How codes look and live.
#[derive(Debug, Clone)]
pub struct CodePolicy {
    pub length: usize,
    pub alphabet: Vec<char>,
    pub lifetime_ms: i64,
    /// Wrong attempts allowed per code; 0 means unlimited.
    pub max_attempts: u32,
}

impl Default for CodePolicy {
    fn default() -> Self {
        Self {
            length: 6,
            alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".chars().collect(),
            lifetime_ms: 3_600_000,
            max_attempts: 5,
        }
    }
}

/// Draws a code from `random_bytes` (the OS CSPRNG in production) by rejection sampling:
/// a byte is used only below the largest multiple of the alphabet size, so every symbol is
/// equally likely.
pub fn generate_code(policy: &CodePolicy, mut random_bytes: impl FnMut(&mut [u8])) -> String {
    let n = policy.alphabet.len();
    assert!(
        (1..=256).contains(&n),
        "alphabet size checked by configuration"
    );
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(policy.length);
    let mut buf = [0u8; 64];
    let mut drawn = 0;
    while drawn < policy.length {
        random_bytes(&mut buf);
        for &b in &buf {
            if (b as usize) < limit {
                out.push(policy.alphabet[b as usize % n]);
                drawn += 1;
                if drawn == policy.length {
                    break;
                }
            }
        }
    }
    out
}

/// The OS CSPRNG.
pub fn os_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS random source is available");
}

/// HMAC-SHA-256 of a code under the server's code secret, hex-encoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CodeHash(String);

impl CodeHash {
    /// Constant-time comparison of two hashes.
    pub fn matches(&self, other: &CodeHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

#[derive(Clone)]
pub struct CodeHasher {
    key: [u8; 32],
}

impl CodeHasher {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    pub fn hash(&self, code: &str) -> CodeHash {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key size");
        mac.update(code.as_bytes());
        CodeHash(hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_codes_are_six_of_a_to_z_and_digits() {
        let policy = CodePolicy::default();
        for _ in 0..100 {
            let code = generate_code(&policy, os_random);
            assert_eq!(code.len(), 6);
            assert!(
                code.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            );
        }
    }

    #[test]
    fn bytes_above_the_last_full_multiple_are_rejected() {
        // 36 symbols: 252 is the largest multiple below 256, so 252..=255 must be skipped.
        let policy = CodePolicy {
            length: 2,
            ..CodePolicy::default()
        };
        let mut calls = 0;
        let code = generate_code(&policy, |buf| {
            calls += 1;
            buf.fill(if calls == 1 { 255 } else { 1 });
        });
        assert_eq!(code, "BB");
        assert_eq!(calls, 2);
    }

    #[test]
    fn every_symbol_appears_with_the_expected_frequency() {
        let policy = CodePolicy {
            length: 36_000,
            ..CodePolicy::default()
        };
        let code = generate_code(&policy, os_random);
        let n = policy.alphabet.len() as f64;
        let expected = policy.length as f64 / n;
        let chi2: f64 = policy
            .alphabet
            .iter()
            .map(|s| {
                let seen = code.chars().filter(|c| c == s).count() as f64;
                (seen - expected).powi(2) / expected
            })
            .sum();
        // 35 degrees of freedom: P(chi2 > 80) is below 1e-5.
        assert!(chi2 < 80.0, "chi-square {chi2} says the draw is biased");
    }

    #[test]
    fn hash_is_keyed_and_comparison_exact() {
        let a = CodeHasher::new([1; 32]);
        let b = CodeHasher::new([2; 32]);
        assert!(a.hash("ABC123").matches(&a.hash("ABC123")));
        assert!(!a.hash("ABC123").matches(&a.hash("abc123")));
        assert!(!a.hash("ABC123").matches(&b.hash("ABC123")));
    }

    proptest! {
        #[test]
        fn length_and_alphabet_always_as_configured(
            length in 1usize..40,
            alphabet in proptest::collection::btree_set(any::<char>(), 2..80),
        ) {
            let policy = CodePolicy { length, alphabet: alphabet.iter().copied().collect(), ..CodePolicy::default() };
            let code = generate_code(&policy, os_random);
            prop_assert_eq!(code.chars().count(), length);
            prop_assert!(code.chars().all(|c| alphabet.contains(&c)));
        }

        #[test]
        fn code_field_counts_unicode_scalars(n in 1usize..=200, ch in any::<char>()) {
            let raw: String = std::iter::repeat_n(ch, n).collect();
            prop_assert!(VerificationCode::parse(&raw).is_ok());
            let long: String = std::iter::repeat_n(ch, n + 200).collect();
            prop_assert_eq!(VerificationCode::parse(&long).err(), Some(CODE_LENGTH_MESSAGE));
        }
    }
}
