//! The outbox payload: the whole SMS (recipient, texts, code) sealed with AES-256-GCM, so no
//! code is readable at rest. Sealed when a command queues it, in the language recorded with
//! its code; opened by the worker.
use crate::config::SmsTexts;
use crate::crypto::OutboxCipher;
use crate::domain::SmsToSend;
use crate::i18n;
use crate::sms::{SmsMessage, SmsTemplate};

/// The event an outbox message belongs to, as ZITADEL's HTTP provider reports it.
const CODE_ADDED: &str = "user.human.phone.code.added";

#[derive(Clone)]
pub struct SmsSealer {
    cipher: OutboxCipher,
    texts: SmsTexts,
}

impl SmsSealer {
    /// `texts` are the operator's message texts, with `{code}` where the code goes; a
    /// language without one gets ZITADEL's.
    pub fn new(key: &[u8; 32], texts: &SmsTexts) -> Self {
        Self {
            cipher: OutboxCipher::new(key),
            texts: texts.clone(),
        }
    }

    /// The message for `sms`, before sealing.
    pub fn message(&self, sms: &SmsToSend) -> SmsMessage {
        if sms.code.is_empty() {
            // Twilio Verify writes the SMS (in this language): no text of ours.
            return SmsMessage {
                to: sms.to.as_ref().to_owned(),
                text: String::new(),
                code: String::new(),
                event_type: CODE_ADDED.to_owned(),
                language: Some(sms.language.code().to_owned()),
                template: None,
            };
        }
        let zitadel = i18n::verify_phone(sms.language, &sms.code);
        let text = match self.texts.get(sms.language) {
            Some(own) => own.replace("{code}", &sms.code),
            None => zitadel.text,
        };
        SmsMessage {
            to: sms.to.as_ref().to_owned(),
            text,
            code: sms.code.clone(),
            event_type: CODE_ADDED.to_owned(),
            language: Some(sms.language.code().to_owned()),
            template: Some(SmsTemplate {
                title: zitadel.title,
                pre_header: zitadel.pre_header,
                subject: zitadel.subject,
                greeting: zitadel.greeting,
                button_text: zitadel.button_text,
            }),
        }
    }

    pub fn seal(&self, sms: &SmsToSend) -> Vec<u8> {
        self.cipher
            .seal(&serde_json::to_vec(&self.message(sms)).expect("plain struct"))
    }

    /// `None` for a payload sealed with another key or damaged.
    pub fn open(&self, sealed: &[u8]) -> Option<SmsMessage> {
        serde_json::from_slice(&self.cipher.open(sealed)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PhoneNumber;
    use crate::i18n::Language;

    fn sms(language: &str) -> SmsToSend {
        SmsToSend {
            to: PhoneNumber::parse("+41710000000").unwrap(),
            code: "K7Q2XZ".into(),
            language: Language::from_code(language).unwrap(),
            region: None,
        }
    }

    #[test]
    fn the_operators_text_for_a_language_beats_the_one_for_all_and_zitadels() {
        let de = Language::from_code("de").unwrap();
        let texts = SmsTexts {
            all: Some("Code: {code}".into()),
            by_language: vec![(de, "Dein Code: {code}".into())],
        };
        let sealer = SmsSealer::new(&[9; 32], &texts);
        assert_eq!(sealer.message(&sms("de")).text, "Dein Code: K7Q2XZ");
        assert_eq!(sealer.message(&sms("fr")).text, "Code: K7Q2XZ");
        let sealer = SmsSealer::new(&[9; 32], &SmsTexts::default());
        let fr = sealer.message(&sms("fr"));
        assert_eq!(
            fr.text,
            "Un nouveau numéro de téléphone a été ajouté. Veuillez utiliser le code suivant pour le vérifier K7Q2XZ"
        );
        // The other templateData stay ZITADEL's, in the message's language.
        assert_eq!(fr.template.unwrap().button_text, "Vérifier le téléphone");
        let opened = sealer.open(&sealer.seal(&sms("ja"))).unwrap();
        assert!(opened.text.ends_with(" K7Q2XZ"), "{}", opened.text);
    }

    #[test]
    fn messages_sealed_before_templates_existed_still_open() {
        let sealer = SmsSealer::new(&[9; 32], &SmsTexts::default());
        let old = br#"{"to":"+41710000000","text":"t K7Q2XZ","code":"K7Q2XZ","event_type":"user.human.phone.code.added"}"#;
        let opened = sealer.open(&OutboxCipher::new(&[9; 32]).seal(old)).unwrap();
        assert_eq!(opened.text, "t K7Q2XZ");
        assert!(opened.template.is_none());
    }
}
