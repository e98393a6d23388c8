//! The three server secrets (token signing seed, code hash key, outbox key): configured ones
//! win; the others live in the data dir on SQLite (`secrets.json`) or in the database on
//! PostgreSQL, where every replica must share them.
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::crypto::{decode_key, encode_key, random32};
use crate::store::{Store, StoreError, StoredSecrets};

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
    #[error("cannot read or store the shared secrets: {0}")]
    Store(#[from] StoreError),
}

/// Keys given in the settings; each one given replaces the stored one.
#[derive(Clone, Default)]
pub struct ConfiguredKeys {
    pub signing_seed: Option<[u8; 32]>,
    pub code_key: Option<[u8; 32]>,
    pub outbox_key: Option<[u8; 32]>,
}

/// The secrets in effect: configured keys, else the database's (PostgreSQL), else the data
/// dir's (SQLite), created on first use.
pub async fn resolve(
    configured: &ConfiguredKeys,
    store: &Store,
    data_dir: &Path,
) -> Result<Secrets, SecretsError> {
    let stored = match (
        configured.signing_seed,
        configured.code_key,
        configured.outbox_key,
    ) {
        (Some(signing_seed), Some(code_key), Some(outbox_key)) => {
            return Ok(Secrets {
                signing_seed,
                code_key,
                outbox_key,
            });
        }
        _ => {
            let fresh = Secrets::generate();
            match store.shared_secrets(&fresh.to_stored()).await? {
                Some(shared) => Secrets::from_stored(&shared)?,
                None => Secrets::load_or_create(data_dir)?,
            }
        }
    };
    Ok(Secrets {
        signing_seed: configured.signing_seed.unwrap_or(stored.signing_seed),
        code_key: configured.code_key.unwrap_or(stored.code_key),
        outbox_key: configured.outbox_key.unwrap_or(stored.outbox_key),
    })
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

impl Secrets {
    fn to_stored(&self) -> StoredSecrets {
        StoredSecrets {
            signing_key: encode_key(&self.signing_seed),
            code_key: encode_key(&self.code_key),
            outbox_key: encode_key(&self.outbox_key),
        }
    }

    fn from_stored(s: &StoredSecrets) -> Result<Secrets, StoreError> {
        let key = |text: &str, name| decode_key(text).ok_or(StoreError::DamagedSecret(name));
        Ok(Secrets {
            signing_seed: key(&s.signing_key, "signing_key")?,
            code_key: key(&s.code_key, "code_key")?,
            outbox_key: key(&s.outbox_key, "outbox_key")?,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

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
