//! The state of one user's phone, folded from its events; `apply` cannot fail.
use serde::{Deserialize, Serialize};

use super::{CodeHash, Event, PhoneNumber};
use crate::clock::Millis;

/// How many send times are remembered for the rolling send limit; configuration keeps the
/// per-window maximum at or below it.
pub const REMEMBERED_SENDS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCode {
    /// None: Twilio Verify made the code and is the one to check it.
    pub hash: Option<CodeHash>,
    /// Twilio Verify's id of the verification, once the send was recorded.
    pub verification_sid: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub failed_attempts: u32,
    /// The sequence of the `code.added` event: which code an outbox message carries.
    pub sequence: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneState {
    pub phone: Option<PhoneNumber>,
    pub verified: bool,
    pub code: Option<PendingCode>,
    /// Times of the most recent code sends (code.added), oldest first.
    pub sends: Vec<Millis>,
    /// Sequence of the last event; 0 before any.
    pub sequence: u64,
    pub created_at: Option<Millis>,
    pub changed_at: Option<Millis>,
}

impl PhoneState {
    pub fn apply(mut self, event: &Event, sequence: u64, at: Millis) -> Self {
        match event {
            Event::PhoneChanged { phone } => {
                self.phone = Some(phone.clone());
                self.verified = false;
                self.code = None;
            }
            Event::CodeAdded {
                code_hash,
                expires_at,
                ..
            } => {
                self.code = Some(PendingCode {
                    hash: code_hash.clone(),
                    verification_sid: None,
                    created_at: at,
                    expires_at: *expires_at,
                    failed_attempts: 0,
                    sequence,
                });
                self.sends.push(at);
                if self.sends.len() > REMEMBERED_SENDS {
                    self.sends.remove(0);
                }
            }
            Event::CodeSent { verification_sid } => {
                // Only written for the code still pending (the decision checks the sequence).
                if let (Some(code), Some(sid)) = (self.code.as_mut(), verification_sid) {
                    code.verification_sid = Some(sid.clone());
                }
            }
            Event::Verified => {
                self.verified = true;
                self.code = None;
            }
            Event::VerificationFailed => {
                if let Some(code) = self.code.as_mut() {
                    code.failed_attempts = code.failed_attempts.saturating_add(1);
                }
            }
            Event::Removed => {
                self.phone = None;
                self.verified = false;
                self.code = None;
            }
        }
        self.sequence = sequence;
        self.created_at.get_or_insert(at);
        self.changed_at = Some(at);
        self
    }

    /// Whether an outbox message for the code added at `code_sequence` may still go out.
    pub fn code_still_current(&self, code_sequence: u64, now: Millis) -> bool {
        matches!(&self.code, Some(c) if c.sequence == code_sequence && now < c.expires_at)
            && !self.verified
    }
}

/// The newest version `PhoneState::to_stored` writes. Rows without a version are version 0,
/// the layout before versioning, which is version 1 without the `v` field. Version 2 adds
/// Twilio Verify codes (no hash, a verification sid); it is written only for states holding
/// one, so a build from before Verify mode still reads every other state.
pub const STATE_FORMAT_VERSION: u32 = 2;

/// The stored layout of a phone's state (the projection's `state` column). It is its own
/// type so `PhoneState` can change without turning stored rows into read errors: a new
/// layout gets a new version here and a conversion from the older ones.
#[derive(Serialize, Deserialize)]
struct StoredStateV1 {
    #[serde(default)]
    v: u32,
    phone: Option<PhoneNumber>,
    verified: bool,
    code: Option<StoredCodeV1>,
    sends: Vec<Millis>,
    sequence: u64,
    created_at: Option<Millis>,
    changed_at: Option<Millis>,
}

#[derive(Serialize, Deserialize)]
struct StoredCodeV1 {
    hash: Option<CodeHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verification_sid: Option<String>,
    created_at: Millis,
    expires_at: Millis,
    failed_attempts: u32,
    sequence: u64,
}

/// A stored state that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum StateFormatError {
    #[error("stored phone state is not readable: {0}")]
    Damaged(#[source] serde_json::Error),
    #[error("stored phone state has format version {0}, newer than this build reads")]
    TooNew(u32),
}

impl PhoneState {
    /// The stored form, in the current format version.
    pub fn to_stored(&self) -> String {
        let twilio_code = self.code.as_ref().is_some_and(|c| c.hash.is_none());
        let stored = StoredStateV1 {
            v: if twilio_code { STATE_FORMAT_VERSION } else { 1 },
            phone: self.phone.clone(),
            verified: self.verified,
            code: self.code.as_ref().map(|c| StoredCodeV1 {
                hash: c.hash.clone(),
                verification_sid: c.verification_sid.clone(),
                created_at: c.created_at,
                expires_at: c.expires_at,
                failed_attempts: c.failed_attempts,
                sequence: c.sequence,
            }),
            sends: self.sends.clone(),
            sequence: self.sequence,
            created_at: self.created_at,
            changed_at: self.changed_at,
        };
        serde_json::to_string(&stored).expect("plain struct")
    }

    /// Reads any format version this build knows (0 to 2).
    pub fn from_stored(text: &str) -> Result<PhoneState, StateFormatError> {
        let s: StoredStateV1 = serde_json::from_str(text).map_err(StateFormatError::Damaged)?;
        if s.v > STATE_FORMAT_VERSION {
            return Err(StateFormatError::TooNew(s.v));
        }
        Ok(PhoneState {
            phone: s.phone,
            verified: s.verified,
            code: s.code.map(|c| PendingCode {
                hash: c.hash,
                verification_sid: c.verification_sid,
                created_at: c.created_at,
                expires_at: c.expires_at,
                failed_attempts: c.failed_attempts,
                sequence: c.sequence,
            }),
            sends: s.sends,
            sequence: s.sequence,
            created_at: s.created_at,
            changed_at: s.changed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as phoneproof wrote it before states were versioned (written out by hand, as it
    /// sits in databases today).
    const UNVERSIONED_ROW: &str = r#"{"phone":"+41710000000","verified":false,"code":{"hash":"9f2c","created_at":1700000000000,"expires_at":1700003600000,"failed_attempts":2,"sequence":2},"sends":[1700000000000],"sequence":3,"created_at":1700000000000,"changed_at":1700000001000}"#;

    #[test]
    fn a_row_written_before_versioning_reads_back() {
        let s = PhoneState::from_stored(UNVERSIONED_ROW).unwrap();
        assert_eq!(s.phone.as_ref().map(|p| p.as_ref()), Some("+41710000000"));
        let code = s.code.as_ref().unwrap();
        assert_eq!((code.failed_attempts, code.sequence), (2, 2));
        assert_eq!(code.expires_at, 1_700_003_600_000);
        assert_eq!((s.sequence, s.sends.len()), (3, 1));
        assert_eq!(s.changed_at, Some(1_700_000_001_000));
    }

    #[test]
    fn stored_state_carries_its_version_and_round_trips() {
        let s = PhoneState::from_stored(UNVERSIONED_ROW).unwrap();
        let text = s.to_stored();
        assert!(text.starts_with(r#"{"v":1,"#), "{text}");
        assert_eq!(PhoneState::from_stored(&text).unwrap(), s);
    }

    #[test]
    fn a_twilio_verify_code_is_stored_as_version_2_and_round_trips() {
        let s = PhoneState::default()
            .apply(
                &Event::PhoneChanged {
                    phone: PhoneNumber::parse("+41710000000").unwrap(),
                },
                1,
                10,
            )
            .apply(
                &Event::CodeAdded {
                    code_hash: None,
                    expires_at: 99,
                    language: None,
                },
                2,
                10,
            )
            .apply(
                &Event::CodeSent {
                    verification_sid: Some("VE42".into()),
                },
                3,
                11,
            );
        let code = s.code.as_ref().unwrap();
        assert_eq!(
            (code.hash.as_ref(), code.verification_sid.as_deref()),
            (None, Some("VE42"))
        );
        let text = s.to_stored();
        assert!(text.starts_with(r#"{"v":2,"#), "{text}");
        assert_eq!(PhoneState::from_stored(&text).unwrap(), s);
    }

    #[test]
    fn a_newer_version_or_garbage_is_an_error_not_a_default() {
        let newer = UNVERSIONED_ROW.replacen('{', r#"{"v":3,"#, 1);
        assert!(matches!(
            PhoneState::from_stored(&newer),
            Err(StateFormatError::TooNew(3))
        ));
        assert!(PhoneState::from_stored("not json").is_err());
        // A stored number that does not parse is damage, not a phone.
        let bad_phone = UNVERSIONED_ROW.replace("+41710000000", "+0");
        assert!(PhoneState::from_stored(&bad_phone).is_err());
    }
}
