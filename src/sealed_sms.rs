//! The outbox payload: the whole SMS (recipient, text, code) sealed with AES-256-GCM, so no
//! code is readable at rest. Sealed when a command queues it, opened by the worker.
use crate::crypto::OutboxCipher;
use crate::domain::SmsToSend;
use crate::sms::SmsMessage;

/// The event an outbox message belongs to, as ZITADEL's HTTP provider reports it.
const CODE_ADDED: &str = "user.human.phone.code.added";

#[derive(Clone)]
pub struct SmsSealer {
    cipher: OutboxCipher,
    template: String,
}

impl SmsSealer {
    /// `template` is the message text with `{code}` where the code goes.
    pub fn new(key: &[u8; 32], template: &str) -> Self {
        Self {
            cipher: OutboxCipher::new(key),
            template: template.to_owned(),
        }
    }

    pub fn seal(&self, sms: &SmsToSend) -> Vec<u8> {
        // Without a code (Twilio Verify writes the SMS) there is no text of ours either.
        let text = if sms.code.is_empty() {
            String::new()
        } else {
            self.template.replace("{code}", &sms.code)
        };
        let msg = SmsMessage {
            to: sms.to.as_ref().to_owned(),
            text,
            code: sms.code.clone(),
            event_type: CODE_ADDED.to_owned(),
            language: None,
        };
        self.cipher
            .seal(&serde_json::to_vec(&msg).expect("plain struct"))
    }

    /// `None` for a payload sealed with another key or damaged.
    pub fn open(&self, sealed: &[u8]) -> Option<SmsMessage> {
        serde_json::from_slice(&self.cipher.open(sealed)?).ok()
    }
}
