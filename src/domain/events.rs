//! The events of a user's phone, with the names ZITADEL's event store uses.
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CodeHash, PhoneNumber};
use crate::clock::Millis;
use crate::i18n::Language;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PhoneChanged {
        phone: PhoneNumber,
    },
    /// Only the keyed hash of the code is ever part of an event. No hash: Twilio Verify
    /// makes the code (and sends and checks it); nothing of it is known here.
    CodeAdded {
        code_hash: Option<CodeHash>,
        expires_at: Millis,
        /// The language of the request that asked for the code, in which its SMS was
        /// written; `None` in events stored before languages were recorded (the default).
        language: Option<Language>,
    },
    /// The provider accepted the SMS; Twilio Verify names its verification (`VE…`).
    CodeSent {
        verification_sid: Option<String>,
    },
    Verified,
    VerificationFailed,
    Removed,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangedPayload {
    phone: PhoneNumber,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeAddedPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_hash: Option<CodeHash>,
    /// Who makes the code when it is not made here, as ZITADEL records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generator_id: Option<String>,
    expiry_ms: Millis,
    /// A code that is no longer shipped reads back as none, so the event still does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    language: Option<String>,
}

/// The generator id of codes Twilio Verify makes.
const TWILIO_VERIFY: &str = "twilio_verify";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeSentPayload {
    generator_info: GeneratorInfo,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratorInfo {
    id: String,
    verification_id: String,
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::PhoneChanged { .. } => "user.human.phone.changed",
            Event::CodeAdded { .. } => "user.human.phone.code.added",
            Event::CodeSent { .. } => "user.human.phone.code.sent",
            Event::Verified => "user.human.phone.verified",
            Event::VerificationFailed => "user.human.phone.verification.failed",
            Event::Removed => "user.human.phone.removed",
        }
    }

    pub fn payload(&self) -> Value {
        match self {
            Event::PhoneChanged { phone } => serde_json::to_value(ChangedPayload {
                phone: phone.clone(),
            })
            .expect("plain struct"),
            Event::CodeAdded {
                code_hash,
                expires_at,
                language,
            } => serde_json::to_value(CodeAddedPayload {
                code_hash: code_hash.clone(),
                generator_id: code_hash.is_none().then(|| TWILIO_VERIFY.to_owned()),
                expiry_ms: *expires_at,
                language: language.map(|l| l.code().to_owned()),
            })
            .expect("plain struct"),
            Event::CodeSent {
                verification_sid: Some(sid),
            } => serde_json::to_value(CodeSentPayload {
                generator_info: GeneratorInfo {
                    id: TWILIO_VERIFY.to_owned(),
                    verification_id: sid.clone(),
                },
            })
            .expect("plain struct"),
            _ => Value::Object(Default::default()),
        }
    }

    /// Reads back what `event_type` and `payload` wrote; `None` for anything else.
    pub fn from_stored(event_type: &str, payload: &str) -> Option<Event> {
        Some(match event_type {
            "user.human.phone.changed" => {
                let p: ChangedPayload = serde_json::from_str(payload).ok()?;
                Event::PhoneChanged { phone: p.phone }
            }
            "user.human.phone.code.added" => {
                let p: CodeAddedPayload = serde_json::from_str(payload).ok()?;
                // A code with neither a hash nor a known generator cannot be checked.
                if p.code_hash.is_none() && p.generator_id.as_deref() != Some(TWILIO_VERIFY) {
                    return None;
                }
                Event::CodeAdded {
                    code_hash: p.code_hash,
                    expires_at: p.expiry_ms,
                    language: p.language.as_deref().and_then(Language::from_code),
                }
            }
            "user.human.phone.code.sent" => Event::CodeSent {
                verification_sid: serde_json::from_str::<CodeSentPayload>(payload)
                    .ok()
                    .map(|p| p.generator_info.verification_id),
            },
            "user.human.phone.verified" => Event::Verified,
            "user.human.phone.verification.failed" => Event::VerificationFailed,
            "user.human.phone.removed" => Event::Removed,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_verify_events_round_trip_as_zitadel_names_them() {
        let added = Event::CodeAdded {
            code_hash: None,
            expires_at: 5,
            language: None,
        };
        let payload = added.payload().to_string();
        assert_eq!(payload, r#"{"expiryMs":5,"generatorId":"twilio_verify"}"#);
        assert_eq!(
            Event::from_stored(added.event_type(), &payload),
            Some(added)
        );
        let sent = Event::CodeSent {
            verification_sid: Some("VE0123".into()),
        };
        let payload = sent.payload().to_string();
        assert_eq!(
            payload,
            r#"{"generatorInfo":{"id":"twilio_verify","verificationId":"VE0123"}}"#
        );
        assert_eq!(Event::from_stored(sent.event_type(), &payload), Some(sent));
        let plain = Event::CodeSent {
            verification_sid: None,
        };
        assert_eq!(plain.payload().to_string(), "{}");
        assert_eq!(Event::from_stored(plain.event_type(), "{}"), Some(plain));
    }

    #[test]
    fn a_code_with_neither_hash_nor_generator_is_unreadable() {
        assert_eq!(
            Event::from_stored("user.human.phone.code.added", r#"{"expiryMs":5}"#),
            None
        );
    }

    #[test]
    fn code_added_keeps_its_language_and_older_events_still_read() {
        let hash = super::super::CodeHasher::new([1; 32]).hash("K7Q2XZ");
        let de = Language::from_code("de");
        let event = Event::CodeAdded {
            code_hash: Some(hash.clone()),
            expires_at: 7,
            language: de,
        };
        let payload = event.payload().to_string();
        assert!(payload.contains(r#""language":"de""#), "{payload}");
        assert_eq!(
            Event::from_stored(event.event_type(), &payload),
            Some(event)
        );
        // Written before languages were recorded, or with one no longer shipped: the default.
        let code_hash = serde_json::to_value(&hash).unwrap();
        let code_hash = code_hash.as_str().unwrap();
        for old in [
            format!(r#"{{"codeHash":"{code_hash}","expiryMs":7}}"#),
            format!(r#"{{"codeHash":"{code_hash}","expiryMs":7,"language":"tlh"}}"#),
        ] {
            assert_eq!(
                Event::from_stored("user.human.phone.code.added", &old),
                Some(Event::CodeAdded {
                    code_hash: Some(hash.clone()),
                    expires_at: 7,
                    language: None,
                }),
                "{old}"
            );
        }
    }
}
