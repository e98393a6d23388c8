//! Server secrets (token signing key, code hash key, outbox key) and outbox encryption.
use std::fs;
use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::domain::os_random;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read or create the secrets file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the secrets file {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
}

/// The three server secrets, 32 bytes each.
#[derive(Clone)]
pub struct Secrets {
    pub signing_seed: [u8; 32],
    pub code_key: [u8; 32],
    pub outbox_key: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    signing_key: String,
    code_key: String,
    outbox_key: String,
}

fn random32() -> [u8; 32] {
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

impl Secrets {
    /// Three fresh random keys.
    pub fn generate() -> Secrets {
        Secrets {
            signing_seed: random32(),
            code_key: random32(),
            outbox_key: random32(),
        }
    }

    /// Reads `secrets.json` from the data dir, creating it (mode 0600) on first use. Two
    /// processes starting together agree on one file: it is written aside and hard-linked
    /// into place, which fails if the other process won.
    pub fn load_or_create(data_dir: &Path) -> Result<Secrets, SecretsError> {
        let path = data_dir.join("secrets.json");
        let io = |source| SecretsError::Io {
            path: path.display().to_string(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(io)?;
        if !path.exists() {
            let fresh = SecretsFile {
                signing_key: encode_key(&random32()),
                code_key: encode_key(&random32()),
                outbox_key: encode_key(&random32()),
            };
            let tmp = data_dir.join(format!(".secrets.{}.tmp", std::process::id()));
            {
                let mut opts = fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp).map_err(io)?;
                f.write_all(
                    serde_json::to_string_pretty(&fresh)
                        .expect("plain")
                        .as_bytes(),
                )
                .map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        let text = fs::read_to_string(&path).map_err(io)?;
        let damaged = |reason: &str| SecretsError::Damaged {
            path: path.display().to_string(),
            reason: reason.to_owned(),
        };
        let file: SecretsFile =
            serde_json::from_str(&text).map_err(|_| damaged("not the expected JSON"))?;
        Ok(Secrets {
            signing_seed: decode_key(&file.signing_key).ok_or_else(|| damaged("signing_key"))?,
            code_key: decode_key(&file.code_key).ok_or_else(|| damaged("code_key"))?,
            outbox_key: decode_key(&file.outbox_key).ok_or_else(|| damaged("outbox_key"))?,
        })
    }
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

    #[test]
    fn two_loads_of_one_data_dir_agree() {
        let dir = tempfile::tempdir().unwrap();
        let first = Secrets::load_or_create(dir.path()).unwrap();
        let second = Secrets::load_or_create(dir.path()).unwrap();
        assert_eq!(first.code_key, second.code_key);
        assert_eq!(first.signing_seed, second.signing_seed);
        assert_ne!(first.code_key, first.outbox_key);
    }
}
