//! Key encoding and the outbox's AES-256-GCM cipher.
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::domain::os_random;

pub fn random32() -> [u8; 32] {
    let mut k = [0u8; 32];
    os_random(&mut k);
    k
}

/// Decodes a base64 32-byte key.
pub fn decode_key(b64: &str) -> Option<[u8; 32]> {
    B64.decode(b64.trim()).ok()?.try_into().ok()
}

pub fn encode_key(key: &[u8; 32]) -> String {
    B64.encode(key)
}

/// AES-256-GCM for outbox payloads: a random 96-bit nonce, stored before the ciphertext.
#[derive(Clone)]
pub struct OutboxCipher {
    cipher: Aes256Gcm,
}

impl OutboxCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        os_random(&mut nonce);
        let ct = self
            .cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        self.cipher.decrypt(&Nonce::from(nonce), ct).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_its_key() {
        let a = OutboxCipher::new(&[1; 32]);
        let b = OutboxCipher::new(&[2; 32]);
        let sealed = a.seal(b"code ABC123");
        assert!(!sealed.windows(6).any(|w| w == b"ABC123"));
        assert_eq!(a.open(&sealed).unwrap(), b"code ABC123");
        assert!(b.open(&sealed).is_none());
    }
}
