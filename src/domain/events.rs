//! The events of a user's phone, with the names ZITADEL's event store uses.
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CodeHash, PhoneNumber};
use crate::clock::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PhoneChanged {
        phone: PhoneNumber,
    },
    /// Only the keyed hash of the code is ever part of an event.
    CodeAdded {
        code_hash: CodeHash,
        expires_at: Millis,
    },
    CodeSent,
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
    code_hash: CodeHash,
    expiry_ms: Millis,
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::PhoneChanged { .. } => "user.human.phone.changed",
            Event::CodeAdded { .. } => "user.human.phone.code.added",
            Event::CodeSent => "user.human.phone.code.sent",
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
            } => serde_json::to_value(CodeAddedPayload {
                code_hash: code_hash.clone(),
                expiry_ms: *expires_at,
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
                Event::CodeAdded {
                    code_hash: p.code_hash,
                    expires_at: p.expiry_ms,
                }
            }
            "user.human.phone.code.sent" => Event::CodeSent,
            "user.human.phone.verified" => Event::Verified,
            "user.human.phone.verification.failed" => Event::VerificationFailed,
            "user.human.phone.removed" => Event::Removed,
            _ => return None,
        })
    }
}
