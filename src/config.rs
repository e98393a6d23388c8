//! Settings: built-in defaults, then a TOML file, then `PHONEPROOF_*` environment variables.
//! A bad value stops the start with the key's name and what is wrong with it.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::crypto::decode_key;
use crate::domain::{CodePolicy, SendPolicy};

#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Local,
    Jwks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProviderKind {
    Log,
    Http,
    Twilio,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<String>,
    pub resource_owner_claim: String,
    /// Base64 Ed25519 seed for local tokens; from the data dir when absent.
    pub signing_key: Option<String>,
    /// Tolerated clock skew for `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
    /// Lifetime of tokens printed by `phoneproof token`, seconds.
    pub token_ttl_secs: u64,
    /// An unknown `kid` refreshes the JWKS at most this often, so bad tokens cannot hammer it.
    pub jwks_min_refresh_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Local,
            issuer: "phoneproof-local".into(),
            audience: "phoneproof".into(),
            jwks_url: None,
            resource_owner_claim: "urn:zitadel:iam:user:resourceowner:id".into(),
            signing_key: None,
            leeway_secs: 0,
            token_ttl_secs: 12 * 3600,
            jwks_min_refresh_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodeSettings {
    pub length: usize,
    pub alphabet: String,
    pub lifetime_secs: u64,
    pub max_attempts: u32,
    pub resend_cooldown_secs: u64,
    pub window_secs: u64,
    pub max_per_window: usize,
    /// Base64 32-byte HMAC key for code hashes; from the data dir when absent.
    pub secret: Option<String>,
}

impl Default for CodeSettings {
    fn default() -> Self {
        Self {
            length: 6,
            alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".into(),
            lifetime_secs: 3600,
            max_attempts: 5,
            resend_cooldown_secs: 30,
            window_secs: 600,
            max_per_window: 5,
            secret: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpProviderSettings {
    pub url: Option<String>,
    /// HMAC key that signs each webhook request (`Phoneproof-Signature`); unsigned when absent.
    pub signing_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioSettings {
    pub base_url: String,
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.twilio.com".into(),
            account_sid: None,
            auth_token: None,
            from: None,
            messaging_service_sid: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    pub provider: SmsProviderKind,
    pub log_file: Option<PathBuf>,
    /// Message text; `{code}` is replaced by the code.
    pub text: String,
    pub timeout_secs: u64,
    /// Base64 32-byte AES key for outbox payloads; from the data dir when absent.
    pub encryption_key: Option<String>,
    pub http: HttpProviderSettings,
    pub twilio: TwilioSettings,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            provider: SmsProviderKind::Log,
            log_file: None,
            text: "A new phone number has been added. Please use the following code to verify it {code}".into(),
            timeout_secs: 5,
            encryption_key: None,
            http: HttpProviderSettings::default(),
            twilio: TwilioSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Whether `serve` runs the delivery worker too (turn off when `phoneproof worker` runs apart).
    pub worker: bool,
    /// Delivery attempts before a message is parked.
    pub max_attempts: u32,
    /// Age after which an undelivered message is parked.
    pub max_age_secs: u64,
    /// How long a claim holds before another worker may take the message.
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    /// First retry delay; doubled each attempt, with jitter, up to `max_backoff_secs`.
    pub base_backoff_ms: u64,
    pub max_backoff_secs: u64,
    pub batch_size: u32,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            worker: true,
            max_attempts: 10,
            max_age_secs: 24 * 3600,
            lease_secs: 30,
            poll_interval_ms: 1000,
            base_backoff_ms: 1000,
            max_backoff_secs: 300,
            batch_size: 32,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// PostgreSQL: connections per process.
    pub database_pool_size: u32,
    /// PostgreSQL: how long to wait for a connection (start-up retries, and per request).
    pub database_connect_timeout_secs: u64,
    /// PostgreSQL: `statement_timeout` of every connection.
    pub database_statement_timeout_ms: u64,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    pub log_format: String,
    pub auth: AuthSettings,
    pub code: CodeSettings,
    pub sms: SmsSettings,
    pub outbox: OutboxSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./phoneproof-data"),
            database_url: None,
            database_pool_size: 16,
            database_connect_timeout_secs: 5,
            database_statement_timeout_ms: 5000,
            body_limit: 64 * 1024,
            log_format: "text".into(),
            auth: AuthSettings::default(),
            code: CodeSettings::default(),
            sms: SmsSettings::default(),
            outbox: OutboxSettings::default(),
        }
    }
}

/// Environment variable → dotted key. Every `PHONEPROOF_*` variable must be one of these.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("PHONEPROOF_LISTEN", "listen"),
    ("PHONEPROOF_DATA_DIR", "data_dir"),
    ("PHONEPROOF_DATABASE_URL", "database_url"),
    ("PHONEPROOF_DATABASE_POOL_SIZE", "database_pool_size"),
    (
        "PHONEPROOF_DATABASE_CONNECT_TIMEOUT_SECS",
        "database_connect_timeout_secs",
    ),
    (
        "PHONEPROOF_DATABASE_STATEMENT_TIMEOUT_MS",
        "database_statement_timeout_ms",
    ),
    ("PHONEPROOF_BODY_LIMIT", "body_limit"),
    ("PHONEPROOF_LOG_FORMAT", "log_format"),
    ("PHONEPROOF_AUTH_MODE", "auth.mode"),
    ("PHONEPROOF_AUTH_ISSUER", "auth.issuer"),
    ("PHONEPROOF_AUTH_AUDIENCE", "auth.audience"),
    ("PHONEPROOF_AUTH_JWKS_URL", "auth.jwks_url"),
    (
        "PHONEPROOF_AUTH_RESOURCE_OWNER_CLAIM",
        "auth.resource_owner_claim",
    ),
    ("PHONEPROOF_AUTH_SIGNING_KEY", "auth.signing_key"),
    ("PHONEPROOF_AUTH_LEEWAY_SECS", "auth.leeway_secs"),
    ("PHONEPROOF_AUTH_TOKEN_TTL_SECS", "auth.token_ttl_secs"),
    (
        "PHONEPROOF_AUTH_JWKS_MIN_REFRESH_SECS",
        "auth.jwks_min_refresh_secs",
    ),
    ("PHONEPROOF_CODE_LENGTH", "code.length"),
    ("PHONEPROOF_CODE_ALPHABET", "code.alphabet"),
    ("PHONEPROOF_CODE_LIFETIME_SECS", "code.lifetime_secs"),
    ("PHONEPROOF_CODE_MAX_ATTEMPTS", "code.max_attempts"),
    (
        "PHONEPROOF_CODE_RESEND_COOLDOWN_SECS",
        "code.resend_cooldown_secs",
    ),
    ("PHONEPROOF_CODE_WINDOW_SECS", "code.window_secs"),
    ("PHONEPROOF_CODE_MAX_PER_WINDOW", "code.max_per_window"),
    ("PHONEPROOF_CODE_SECRET", "code.secret"),
    ("PHONEPROOF_SMS_PROVIDER", "sms.provider"),
    ("PHONEPROOF_SMS_LOG_FILE", "sms.log_file"),
    ("PHONEPROOF_SMS_TEXT", "sms.text"),
    ("PHONEPROOF_SMS_TIMEOUT_SECS", "sms.timeout_secs"),
    ("PHONEPROOF_SMS_ENCRYPTION_KEY", "sms.encryption_key"),
    ("PHONEPROOF_SMS_HTTP_URL", "sms.http.url"),
    ("PHONEPROOF_SMS_HTTP_SIGNING_KEY", "sms.http.signing_key"),
    ("PHONEPROOF_SMS_TWILIO_BASE_URL", "sms.twilio.base_url"),
    (
        "PHONEPROOF_SMS_TWILIO_ACCOUNT_SID",
        "sms.twilio.account_sid",
    ),
    ("PHONEPROOF_SMS_TWILIO_AUTH_TOKEN", "sms.twilio.auth_token"),
    ("PHONEPROOF_SMS_TWILIO_FROM", "sms.twilio.from"),
    (
        "PHONEPROOF_SMS_TWILIO_MESSAGING_SERVICE_SID",
        "sms.twilio.messaging_service_sid",
    ),
    ("PHONEPROOF_OUTBOX_WORKER", "outbox.worker"),
    ("PHONEPROOF_OUTBOX_MAX_ATTEMPTS", "outbox.max_attempts"),
    ("PHONEPROOF_OUTBOX_MAX_AGE_SECS", "outbox.max_age_secs"),
    ("PHONEPROOF_OUTBOX_LEASE_SECS", "outbox.lease_secs"),
    (
        "PHONEPROOF_OUTBOX_POLL_INTERVAL_MS",
        "outbox.poll_interval_ms",
    ),
    (
        "PHONEPROOF_OUTBOX_BASE_BACKOFF_MS",
        "outbox.base_backoff_ms",
    ),
    (
        "PHONEPROOF_OUTBOX_MAX_BACKOFF_SECS",
        "outbox.max_backoff_secs",
    ),
    ("PHONEPROOF_OUTBOX_BATCH_SIZE", "outbox.batch_size"),
];

/// Variables with the prefix that are not settings (read elsewhere); `PHONEPROOF_TEST_*`
/// belong to the test harness.
const ENV_NOT_SETTINGS: &[&str] = &["PHONEPROOF_CONFIG", "PHONEPROOF_LOG"];

const BOOL_KEYS: &[&str] = &["outbox.worker"];

/// Whether a key holds a number (environment values are strings and must be typed for TOML).
fn numeric_key(key: &str) -> bool {
    key.ends_with("_secs")
        || key.ends_with("_ms")
        || key.ends_with("_attempts")
        || key.ends_with("_size")
        || key.ends_with("_window")
        || key == "code.length"
        || key == "body_limit"
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ConfigError> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut cur = table;
    for part in parts {
        cur = cur
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| bad(key, format!("`{part}` must be a table")))?;
    }
    cur.insert(last.to_owned(), value);
    Ok(())
}

impl Settings {
    /// Loads settings from an optional TOML file and the given environment.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
                text.parse::<toml::Table>().map_err(|e| {
                    bad(
                        "--config",
                        format!("{} is not valid TOML: {e}", path.display()),
                    )
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if !name.starts_with("PHONEPROOF_")
                || name.starts_with("PHONEPROOF_TEST_")
                || ENV_NOT_SETTINGS.contains(&name.as_str())
            {
                continue;
            }
            let Some((_, key)) = ENV_KEYS.iter().find(|(env_name, _)| env_name == name) else {
                return Err(bad(
                    name,
                    "unknown setting (see the configuration reference in README.md)",
                ));
            };
            let typed = if BOOL_KEYS.contains(key) {
                toml::Value::Boolean(match value.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(bad(
                            key,
                            format!("`{value}` is not true or false (from {name})"),
                        ));
                    }
                })
            } else if numeric_key(key) {
                toml::Value::Integer(value.trim().parse::<i64>().map_err(|_| {
                    bad(
                        key,
                        format!("`{value}` is not a whole number (from {name})"),
                    )
                })?)
            } else {
                toml::Value::String(value.clone())
            };
            set_dotted(&mut table, key, typed)?;
        }
        let settings: Settings = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| bad("config", e.message().to_owned()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen.parse::<SocketAddr>().map_err(|_| {
            bad(
                "listen",
                format!("`{}` is not an address like 127.0.0.1:8080", self.listen),
            )
        })?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(bad(
                "database_url",
                "must start with sqlite: or postgres://",
            ));
        }
        if self.database_pool_size == 0 {
            return Err(bad("database_pool_size", "must be at least 1"));
        }
        if self.database_connect_timeout_secs == 0 {
            return Err(bad("database_connect_timeout_secs", "must be more than 0"));
        }
        if self.body_limit < 1024 {
            return Err(bad("body_limit", "must be at least 1024 bytes"));
        }
        if !["text", "json"].contains(&self.log_format.as_str()) {
            return Err(bad("log_format", "must be `text` or `json`"));
        }
        if self.auth.mode == AuthMode::Jwks {
            let url = self.auth.jwks_url.as_deref().unwrap_or("");
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(
                    "auth.jwks_url",
                    "required as an http(s) URL when auth.mode is jwks",
                ));
            }
        }
        if self.auth.issuer.is_empty() {
            return Err(bad("auth.issuer", "must not be empty"));
        }
        if self.auth.audience.is_empty() {
            return Err(bad("auth.audience", "must not be empty"));
        }
        if self.auth.resource_owner_claim.is_empty() {
            return Err(bad("auth.resource_owner_claim", "must not be empty"));
        }
        for (key, value) in [
            ("auth.signing_key", &self.auth.signing_key),
            ("code.secret", &self.code.secret),
            ("sms.encryption_key", &self.sms.encryption_key),
        ] {
            if let Some(v) = value
                && decode_key(v).is_none()
            {
                return Err(bad(
                    key,
                    "must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)",
                ));
            }
        }
        let c = &self.code;
        if !(4..=64).contains(&c.length) {
            return Err(bad("code.length", "must be between 4 and 64"));
        }
        let alphabet: Vec<char> = c.alphabet.chars().collect();
        let mut distinct = alphabet.clone();
        distinct.sort();
        distinct.dedup();
        if alphabet.len() < 2 || alphabet.len() > 256 || distinct.len() != alphabet.len() {
            return Err(bad(
                "code.alphabet",
                "must hold 2 to 256 distinct characters",
            ));
        }
        if alphabet
            .iter()
            .any(|ch| ch.is_control() || ch.is_whitespace())
        {
            return Err(bad(
                "code.alphabet",
                "must not contain spaces or control characters",
            ));
        }
        if c.lifetime_secs == 0 {
            return Err(bad("code.lifetime_secs", "must be more than 0"));
        }
        if c.max_per_window > crate::domain::REMEMBERED_SENDS {
            return Err(bad(
                "code.max_per_window",
                "must be at most 32 (0 turns the limit off)",
            ));
        }
        if c.max_per_window > 0 && c.window_secs == 0 {
            return Err(bad(
                "code.window_secs",
                "must be more than 0 when code.max_per_window is set",
            ));
        }
        if !self.sms.text.contains("{code}") {
            return Err(bad("sms.text", "must contain `{code}`"));
        }
        if self.sms.timeout_secs == 0 {
            return Err(bad("sms.timeout_secs", "must be more than 0"));
        }
        match self.sms.provider {
            SmsProviderKind::Log => {}
            SmsProviderKind::Http => {
                let url = self.sms.http.url.as_deref().unwrap_or("");
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad(
                        "sms.http.url",
                        "required as an http(s) URL when sms.provider is http",
                    ));
                }
            }
            SmsProviderKind::Twilio => {
                let t = &self.sms.twilio;
                if t.account_sid.as_deref().unwrap_or("").is_empty() {
                    return Err(bad(
                        "sms.twilio.account_sid",
                        "required when sms.provider is twilio",
                    ));
                }
                if t.auth_token.as_deref().unwrap_or("").is_empty() {
                    return Err(bad(
                        "sms.twilio.auth_token",
                        "required when sms.provider is twilio",
                    ));
                }
                if t.from.is_none() == t.messaging_service_sid.is_none() {
                    return Err(bad(
                        "sms.twilio.from",
                        "set exactly one of sms.twilio.from and sms.twilio.messaging_service_sid",
                    ));
                }
                if !(t.base_url.starts_with("http://") || t.base_url.starts_with("https://")) {
                    return Err(bad("sms.twilio.base_url", "must be an http(s) URL"));
                }
            }
        }
        let o = &self.outbox;
        if o.max_attempts == 0 {
            return Err(bad("outbox.max_attempts", "must be at least 1"));
        }
        if o.lease_secs == 0 {
            return Err(bad("outbox.lease_secs", "must be more than 0"));
        }
        if o.poll_interval_ms == 0 {
            return Err(bad("outbox.poll_interval_ms", "must be more than 0"));
        }
        if o.batch_size == 0 || o.batch_size > 1000 {
            return Err(bad("outbox.batch_size", "must be between 1 and 1000"));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated")
    }

    /// The database URL in effect: the configured one, or the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("phoneproof.db").display())
        })
    }

    pub fn pg_tuning(&self) -> crate::store::PgTuning {
        crate::store::PgTuning {
            pool_size: self.database_pool_size,
            connect_timeout: std::time::Duration::from_secs(self.database_connect_timeout_secs),
            statement_timeout: std::time::Duration::from_millis(self.database_statement_timeout_ms),
        }
    }

    pub fn code_policy(&self) -> CodePolicy {
        CodePolicy {
            length: self.code.length,
            alphabet: self.code.alphabet.chars().collect(),
            lifetime_ms: self.code.lifetime_secs as i64 * 1000,
            max_attempts: self.code.max_attempts,
        }
    }

    pub fn send_policy(&self) -> SendPolicy {
        SendPolicy {
            resend_cooldown_ms: self.code.resend_cooldown_secs as i64 * 1000,
            window_ms: self.code.window_secs as i64 * 1000,
            max_per_window: self.code.max_per_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_configuration_gives_the_embedded_defaults() {
        let s = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.auth.mode, AuthMode::Local);
        assert_eq!(s.sms.provider, SmsProviderKind::Log);
        assert!(
            s.effective_database_url()
                .ends_with("phoneproof-data/phoneproof.db")
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n[code]\nlength = 8\n").unwrap();
        let s = Settings::load(Some(&path), &env(&[("PHONEPROOF_CODE_LENGTH", "10")])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.code.length, 10);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("PHONEPROOF_LISTEN", "nowhere")], "`listen`"),
            (&[("PHONEPROOF_CODE_LENGTH", "six")], "`code.length`"),
            (&[("PHONEPROOF_CODE_LENGTH", "2")], "`code.length`"),
            (&[("PHONEPROOF_CODE_ALPHABET", "AAB")], "`code.alphabet`"),
            (&[("PHONEPROOF_AUTH_MODE", "jwks")], "`auth.jwks_url`"),
            (&[("PHONEPROOF_SMS_PROVIDER", "http")], "`sms.http.url`"),
            (
                &[("PHONEPROOF_SMS_PROVIDER", "twilio")],
                "`sms.twilio.account_sid`",
            ),
            (&[("PHONEPROOF_CODE_SECRET", "short")], "`code.secret`"),
            (
                &[("PHONEPROOF_NO_SUCH_THING", "1")],
                "`PHONEPROOF_NO_SUCH_THING`",
            ),
        ];
        for (vars, key) in cases {
            let err = Settings::load(None, &env(vars)).unwrap_err().to_string();
            assert!(err.contains(key), "{vars:?}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[code]\nlenght = 8\n").unwrap();
        let err = Settings::load(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lenght"), "{err}");
    }
}
