//! The state of one user's phone, folded from its events; `apply` cannot fail.
use serde::{Deserialize, Serialize};

use super::{CodeHash, Event, PhoneNumber};
use crate::clock::Millis;

/// How many send times are remembered for the rolling send limit; configuration keeps the
/// per-window maximum at or below it.
pub const REMEMBERED_SENDS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCode {
    pub hash: CodeHash,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub failed_attempts: u32,
    /// The sequence of the `code.added` event: which code an outbox message carries.
    pub sequence: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
            } => {
                self.code = Some(PendingCode {
                    hash: code_hash.clone(),
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
            Event::CodeSent => {}
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
