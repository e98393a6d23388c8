//! Settings: built-in defaults, then a TOML file, then `PHONEPROOF_*` environment variables,
//! layered by `figment` into the raw, file-shaped form, then parsed in one step into typed
//! settings that cannot hold an invalid value. A bad value stops the start with the key's
//! name and what is wrong with it.
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};

use crate::client_addr::TrustedProxies;
use crate::crypto::decode_key;
use crate::domain::{
    CodePolicy, DestinationPolicy, Limit, NUMBER_TYPES, Region, RegionRules, SendLimits, SendPolicy,
};
use crate::i18n::Language;
use crate::store::PgTuning;

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

// ---------------------------------------------------------------------------------------------
// The typed settings the program runs on.

/// A 32-byte key; its `Debug` never shows it and its memory is wiped on drop.
pub struct Key32(SecretBox<[u8; 32]>);

impl Key32 {
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl From<[u8; 32]> for Key32 {
    fn from(bytes: [u8; 32]) -> Self {
        Key32(SecretBox::new(Box::new(bytes)))
    }
}

impl Clone for Key32 {
    fn clone(&self) -> Self {
        Key32::from(*self.expose())
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32([REDACTED])")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: Database,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    /// Open connections at most; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/1 request head (request line and headers) must arrive within this.
    pub header_read_timeout: Duration,
    /// Largest HTTP/1 request head and HTTP/2 header list, bytes.
    pub max_header_bytes: usize,
    /// HTTP/2 PING interval; a peer that does not answer within it is dropped.
    pub http2_keepalive_interval: Duration,
    /// A request is read and answered (up to the response head) within this, or gets 408.
    pub request_timeout: Duration,
    /// Requests in handlers at once, all connections together (503 beyond).
    pub max_requests_in_flight: usize,
    pub log_format: LogFormat,
    /// Origins whose pages may call the gRPC-web surface.
    pub grpc_web_origins: AllowedOrigins,
    pub auth: AuthSettings,
    pub i18n: I18nSettings,
    pub code: CodeSettings,
    pub sms: SmsSettings,
    pub outbox: OutboxSettings,
    pub fraud: FraudSettings,
}

/// Against SMS pumping and bombing (README, "Abuse protection").
#[derive(Debug, Clone)]
pub struct FraudSettings {
    pub destinations: DestinationPolicy,
    pub limits: SendLimits,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: TrustedProxies,
}

#[derive(Debug, Clone, Copy)]
pub struct I18nSettings {
    /// The language of a request whose token and `Accept-Language` name no shipped one.
    pub default_language: Language,
}

#[derive(Debug, Clone)]
pub enum Database {
    /// SQLite at this URL, or (None) the file `phoneproof.db` in the data dir.
    Sqlite { url: Option<String> },
    /// The URL carries the password, hence secret.
    Postgres { url: SecretString, tuning: PgTuning },
}

impl Database {
    /// PostgreSQL at `url` with the default pool and timeouts.
    pub fn postgres(url: impl Into<String>) -> Database {
        Database::Postgres {
            url: SecretString::from(url.into()),
            tuning: PgTuning::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin, as ZITADEL allows.
    Any,
    /// Only these, e.g. `https://console.example.com`.
    List(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub issuer: String,
    pub audience: String,
    pub resource_owner_claim: String,
    /// The claim holding the user's preferred language (a language tag).
    pub language_claim: String,
    /// Tolerated clock skew for `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
    /// The longest lifetime a token may claim (from `iat`, else from now to `exp`).
    pub max_token_lifetime: Duration,
}

#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Tokens signed by this service's own Ed25519 key (from the data dir when `None`).
    Local {
        signing_key: Option<Key32>,
        /// Lifetime of tokens printed by `phoneproof token`.
        token_ttl: Duration,
    },
    /// Tokens of an outside issuer, verified against its key set.
    Jwks {
        url: Url,
        /// An unknown `kid` refreshes the key set at most this often.
        min_refresh: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct CodeSettings {
    pub policy: CodePolicy,
    pub send: SendPolicy,
    /// HMAC key for code hashes; from the data dir when absent.
    pub secret: Option<Key32>,
}

#[derive(Debug, Clone)]
pub struct SmsSettings {
    pub provider: SmsProvider,
    /// The operator's message texts instead of ZITADEL's.
    pub texts: SmsTexts,
    pub timeout: Duration,
    /// AES key for outbox payloads; from the data dir when absent.
    pub encryption_key: Option<Key32>,
}

/// Message texts set by the operator; `{code}` is replaced by the code. A language without
/// one gets ZITADEL's text in that language.
#[derive(Debug, Clone, Default)]
pub struct SmsTexts {
    /// `sms.text`: for every language.
    pub all: Option<String>,
    /// `sms.texts.<language>`: for one language, before `all`.
    pub by_language: Vec<(Language, String)>,
}

impl SmsTexts {
    /// The operator's text for `language`, if any.
    pub fn get(&self, language: Language) -> Option<&str> {
        self.by_language
            .iter()
            .find_map(|(l, text)| (*l == language).then_some(text.as_str()))
            .or(self.all.as_deref())
    }
}

#[derive(Debug, Clone)]
pub enum SmsProvider {
    /// Messages go to the log (and, when set, one JSON line each to a file): local use.
    Log {
        file: Option<PathBuf>,
    },
    /// ZITADEL's webhook; each request signed (`Phoneproof-Signature`) when a key is set.
    Http {
        url: Url,
        signing_key: Option<SecretString>,
    },
    Twilio(TwilioSettings),
    /// Twilio Verify mode: Twilio makes, sends and checks the codes.
    TwilioVerify(TwilioVerifySettings),
}

#[derive(Debug, Clone)]
pub struct TwilioSettings {
    pub base_url: Url,
    pub account_sid: String,
    pub auth_token: SecretString,
    pub sender: TwilioSender,
}

#[derive(Debug, Clone)]
pub struct TwilioVerifySettings {
    pub base_url: Url,
    pub account_sid: String,
    pub auth_token: SecretString,
    /// The Verify Service (`VA…`) whose settings (code length, lifetime, templates) apply.
    pub service_sid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    From(String),
    MessagingService(String),
}

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Whether `serve` runs the delivery worker too (off when `phoneproof worker` runs apart).
    pub worker: bool,
    /// Delivery attempts before a message is parked.
    pub max_attempts: u32,
    /// Age after which an undelivered message is parked.
    pub max_age: Duration,
    /// How long a claim holds before another worker may take the message.
    pub lease: Duration,
    pub poll_interval: Duration,
    /// First retry delay; doubled each attempt, with jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub batch_size: u32,
    /// Deliveries in flight at once per process.
    pub concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        parse(RawSettings::default()).expect("the built-in defaults are valid")
    }
}

impl Settings {
    /// Loads settings from an optional TOML file and the given environment.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = file {
            // figment skips a missing file silently; a file named on the command line must exist.
            std::fs::metadata(path)
                .map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let names = env_names();
        for (name, value) in env {
            if !name.starts_with("PHONEPROOF_")
                || name.starts_with("PHONEPROOF_TEST_")
                || ENV_NOT_SETTINGS.contains(&name.as_str())
            {
                continue;
            }
            let Some(key) = names.get(name) else {
                return Err(bad(
                    name,
                    "unknown setting (see the configuration reference in README.md)",
                ));
            };
            figment = figment.merge(EnvVar {
                name: name.clone(),
                key: key.clone(),
                value: value.clone(),
            });
        }
        // Lossy: environment values are text, so "10" and "yes" must still fill numbers and
        // booleans; strings are never reinterpreted (an alphabet "0123456789" stays text).
        let raw: RawSettings = figment.extract_lossy().map_err(from_figment)?;
        parse(raw)
    }

    /// The database URL in effect (secret: a PostgreSQL URL carries the password).
    pub fn database_url(&self) -> SecretString {
        match &self.database {
            Database::Sqlite { url: Some(url) } => SecretString::from(url.clone()),
            Database::Sqlite { url: None } => SecretString::from(format!(
                "sqlite://{}",
                self.data_dir.join("phoneproof.db").display()
            )),
            Database::Postgres { url, .. } => url.clone(),
        }
    }

    pub fn pg_tuning(&self) -> PgTuning {
        match &self.database {
            Database::Postgres { tuning, .. } => tuning.clone(),
            Database::Sqlite { .. } => PgTuning::default(),
        }
    }
}

/// The start-up summary: one line per choice in effect, never a secret.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data dir: {}", self.data_dir.display())?;
        match &self.database {
            Database::Sqlite { .. } => writeln!(
                f,
                "database: {} (SQLite, WAL, synchronous=NORMAL)",
                self.database_url().expose_secret()
            )?,
            Database::Postgres { url, tuning } => {
                let url = url.expose_secret();
                // Only what follows the credentials.
                let shown = url.rsplit('@').next().unwrap_or(url);
                writeln!(
                    f,
                    "database: PostgreSQL at {shown} ({} connections, {} writers, statement timeout {} ms)",
                    tuning.pool_size,
                    tuning.writers,
                    tuning.statement_timeout.as_millis()
                )?
            }
        }
        let a = &self.auth;
        match &a.mode {
            AuthMode::Local { .. } => writeln!(
                f,
                "auth: local tokens (issuer {}, audience {}); get one with `phoneproof token --user <id> --org <id>`",
                a.issuer, a.audience
            )?,
            AuthMode::Jwks { url, .. } => writeln!(
                f,
                "auth: JWKS from {url} (issuer {}, audience {})",
                a.issuer, a.audience
            )?,
        }
        writeln!(
            f,
            "auth: resource owner claim `{}`, language claim `{}`",
            a.resource_owner_claim, a.language_claim
        )?;
        writeln!(
            f,
            "languages: the token's `{}` claim, else Accept-Language, else {}",
            a.language_claim, self.i18n.default_language
        )?;
        match &self.sms.provider {
            SmsProvider::Log { file } => writeln!(
                f,
                "sms: log provider: messages (with their codes) go to this log{}; for local use only",
                file.as_ref()
                    .map(|p| format!(" and to {}", p.display()))
                    .unwrap_or_default()
            )?,
            SmsProvider::Http { signing_key, .. } => writeln!(
                f,
                "sms: HTTP provider ({} requests)",
                if signing_key.is_some() {
                    "signed"
                } else {
                    "unsigned"
                }
            )?,
            SmsProvider::Twilio(t) => writeln!(f, "sms: Twilio provider at {}", t.base_url)?,
            SmsProvider::TwilioVerify(v) => writeln!(
                f,
                "sms: Twilio Verify mode (service {}) at {}: Twilio makes, sends and checks the codes; code length, alphabet, sms.text and the sender are not used",
                v.service_sid, v.base_url
            )?,
        }
        let (c, s) = (&self.code.policy, &self.code.send);
        writeln!(
            f,
            "codes: {} characters of {:?}, valid {} s, {} wrong attempts allowed (0 = unlimited)",
            c.length,
            c.alphabet.iter().collect::<String>(),
            c.lifetime_ms / 1000,
            c.max_attempts
        )?;
        writeln!(
            f,
            "sends: resend cooldown {} s, at most {} codes per {} s per user",
            s.resend_cooldown_ms / 1000,
            s.max_per_window,
            s.window_ms / 1000
        )?;
        let d = &self.fraud.destinations;
        let types: Vec<&str> = crate::domain::NUMBER_TYPES
            .iter()
            .filter(|(_, t)| d.allowed_types.contains(t))
            .map(|(n, _)| *n)
            .collect();
        let regions = |list: &[Region]| list.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let mut allowed = regions(&d.regions.allowed);
        if d.regions.all_geographic {
            allowed.insert(0, "*".into());
        }
        let denied = regions(&d.regions.denied);
        writeln!(
            f,
            "destinations: types {}; regions {}{}",
            types.join(","),
            allowed.join(","),
            if denied.is_empty() {
                String::new()
            } else {
                format!(" except {}", denied.join(","))
            }
        )?;
        let l = &self.fraud.limits;
        let shown = |l: Limit| match l.max {
            0 => "off".to_owned(),
            n => format!("{n} per {} s", l.window_ms / 1000),
        };
        write!(
            f,
            "send limits (all replicas together): per number {}, per client address {}, per region {}, in total {}; trusted proxies: {}",
            shown(l.destination),
            shown(l.client),
            shown(l.region),
            shown(l.global),
            match self.fraud.trusted_proxies.0.as_slice() {
                [] => "none".to_owned(),
                nets => nets
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The raw form: what the file and the environment say, before any check.

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAuth {
    mode: String,
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    resource_owner_claim: String,
    language_claim: String,
    signing_key: Option<String>,
    leeway_secs: u64,
    token_ttl_secs: u64,
    jwks_min_refresh_secs: u64,
    max_token_lifetime_secs: u64,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            mode: "local".into(),
            issuer: "phoneproof-local".into(),
            audience: "phoneproof".into(),
            jwks_url: None,
            resource_owner_claim: "urn:zitadel:iam:user:resourceowner:id".into(),
            language_claim: "locale".into(),
            signing_key: None,
            leeway_secs: 0,
            token_ttl_secs: 12 * 3600,
            jwks_min_refresh_secs: 10,
            max_token_lifetime_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCode {
    length: usize,
    alphabet: String,
    lifetime_secs: u64,
    max_attempts: u32,
    resend_cooldown_secs: u64,
    window_secs: u64,
    max_per_window: usize,
    secret: Option<String>,
}

impl Default for RawCode {
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    url: Option<String>,
    signing_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTwilio {
    base_url: String,
    account_sid: Option<String>,
    auth_token: Option<String>,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    verify_service_sid: Option<String>,
    verify_base_url: String,
}

impl Default for RawTwilio {
    fn default() -> Self {
        Self {
            base_url: "https://api.twilio.com".into(),
            account_sid: None,
            auth_token: None,
            from: None,
            messaging_service_sid: None,
            verify_service_sid: None,
            verify_base_url: "https://verify.twilio.com".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSms {
    provider: String,
    log_file: Option<PathBuf>,
    text: Option<String>,
    /// One entry per shipped language, empty when not set, so that each has its
    /// environment variable (`PHONEPROOF_SMS_TEXTS_DE`).
    texts: BTreeMap<String, String>,
    timeout_secs: u64,
    encryption_key: Option<String>,
    http: RawHttp,
    twilio: RawTwilio,
}

impl Default for RawSms {
    fn default() -> Self {
        Self {
            provider: "log".into(),
            log_file: None,
            text: None,
            texts: Language::all()
                .map(|l| (l.code().to_owned(), String::new()))
                .collect(),
            timeout_secs: 5,
            encryption_key: None,
            http: RawHttp::default(),
            twilio: RawTwilio::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawI18n {
    default_language: String,
}

impl Default for RawI18n {
    fn default() -> Self {
        Self {
            default_language: "en".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOutbox {
    worker: bool,
    max_attempts: u32,
    max_age_secs: u64,
    lease_secs: u64,
    poll_interval_ms: u64,
    base_backoff_ms: u64,
    max_backoff_secs: u64,
    batch_size: u32,
    concurrency: usize,
}

impl Default for RawOutbox {
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
            concurrency: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFraud {
    allowed_number_types: String,
    allowed_regions: String,
    denied_regions: String,
    destination_max_codes: u64,
    destination_window_secs: u64,
    region_max_per_minute: u64,
    global_max_per_minute: u64,
    client_max_codes: u64,
    client_window_secs: u64,
    trusted_proxies: String,
}

impl Default for RawFraud {
    fn default() -> Self {
        Self {
            allowed_number_types: "mobile,fixed_line,fixed_line_or_mobile".into(),
            allowed_regions: "*".into(),
            denied_regions: String::new(),
            destination_max_codes: 5,
            destination_window_secs: 3600,
            region_max_per_minute: 120,
            global_max_per_minute: 600,
            client_max_codes: 0,
            client_window_secs: 3600,
            trusted_proxies: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    listen: String,
    data_dir: PathBuf,
    database_url: Option<String>,
    database_pool_size: u32,
    database_writers: usize,
    database_connect_timeout_secs: u64,
    database_statement_timeout_ms: u64,
    body_limit: usize,
    max_connections: usize,
    idle_timeout_ms: u64,
    http2_max_concurrent_streams: u32,
    header_read_timeout_ms: u64,
    max_header_bytes: usize,
    http2_keepalive_interval_ms: u64,
    request_timeout_ms: u64,
    max_requests_in_flight: usize,
    log_format: String,
    grpc_web_allowed_origins: String,
    auth: RawAuth,
    i18n: RawI18n,
    code: RawCode,
    sms: RawSms,
    outbox: RawOutbox,
    fraud: RawFraud,
}

impl Default for RawSettings {
    fn default() -> Self {
        let pg = PgTuning::default();
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./phoneproof-data"),
            database_url: None,
            database_pool_size: pg.pool_size,
            database_writers: pg.writers,
            database_connect_timeout_secs: pg.connect_timeout.as_secs(),
            database_statement_timeout_ms: pg.statement_timeout.as_millis() as u64,
            body_limit: 64 * 1024,
            max_connections: 0,
            idle_timeout_ms: 60_000,
            http2_max_concurrent_streams: 100,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 32 * 1024,
            http2_keepalive_interval_ms: 20_000,
            request_timeout_ms: 30_000,
            max_requests_in_flight: 1024,
            log_format: "text".into(),
            grpc_web_allowed_origins: "*".into(),
            auth: RawAuth::default(),
            i18n: RawI18n::default(),
            code: RawCode::default(),
            sms: RawSms::default(),
            outbox: RawOutbox::default(),
            fraud: RawFraud::default(),
        }
    }
}

/// Variables with the prefix that are not settings (read elsewhere); `PHONEPROOF_TEST_*`
/// belong to the test harness.
const ENV_NOT_SETTINGS: &[&str] = &["PHONEPROOF_CONFIG", "PHONEPROOF_LOG"];

/// `PHONEPROOF_<KEY WITH _ FOR .>` → dotted key, for every key the raw settings have: the
/// environment names follow from the struct, so a new setting gets its variable for free.
fn env_names() -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, inner) in fields {
                    let key = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&key, inner, out);
                }
            }
            _ => {
                let env = format!("PHONEPROOF_{}", prefix.replace('.', "_").to_uppercase());
                out.insert(env, prefix.to_owned());
            }
        }
    }
    let defaults = serde_json::to_value(RawSettings::default()).expect("plain data");
    let mut out = BTreeMap::new();
    walk("", &defaults, &mut out);
    out
}

/// One environment variable as a figment layer, so an error names the variable it came from.
struct EnvVar {
    name: String,
    key: String,
    value: String,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let nested = figment::util::nest(&self.key, Value::from(self.value.clone()));
        let dict = match nested {
            Value::Dict(_, dict) => dict,
            _ => unreachable!("nest always returns a dict"),
        };
        Ok(Profile::Default.collect(dict))
    }
}

fn from_figment(err: figment::Error) -> ConfigError {
    let source = err
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(src) => format!(" (from {} {src})", m.name),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    // The path ends with the offending key (an unknown one included).
    let key = if err.path.is_empty() {
        "config".to_owned()
    } else {
        err.path.join(".")
    };
    bad(&key, format!("{}{source}", err.kind))
}

fn http_url(key: &str, value: Option<&str>, when: &str) -> Result<Url, ConfigError> {
    value
        .and_then(|v| Url::parse(v).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| bad(key, format!("required as an http(s) URL{when}")))
}

fn key32(key: &str, value: &Option<String>) -> Result<Option<Key32>, ConfigError> {
    value
        .as_deref()
        .map(|v| {
            decode_key(v).map(Key32::from).ok_or_else(|| {
                bad(
                    key,
                    "must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)",
                )
            })
        })
        .transpose()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms_i64(d: u64, unit_ms: u64) -> i64 {
    d.saturating_mul(unit_ms).min(i64::MAX as u64) as i64
}

fn nonzero<T: PartialEq + Default>(key: &str, v: T) -> Result<T, ConfigError> {
    if v == T::default() {
        Err(bad(key, "must be more than 0"))
    } else {
        Ok(v)
    }
}

/// The one step from what was written to what runs.
fn parse(raw: RawSettings) -> Result<Settings, ConfigError> {
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        bad(
            "listen",
            format!("`{}` is not an address like 127.0.0.1:8080", raw.listen),
        )
    })?;
    let database = match raw.database_url {
        None => Database::Sqlite { url: None },
        Some(url) if url.starts_with("sqlite:") => Database::Sqlite { url: Some(url) },
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            if raw.database_pool_size == 0 {
                return Err(bad("database_pool_size", "must be at least 1"));
            }
            // Reads and the outbox worker's claims and settlements need connections beside
            // the writers (readiness probes run on a writer).
            if raw.database_writers == 0 || raw.database_writers >= raw.database_pool_size as usize
            {
                return Err(bad(
                    "database_writers",
                    format!(
                        "must be at least 1 and less than database_pool_size ({})",
                        raw.database_pool_size
                    ),
                ));
            }
            Database::Postgres {
                url: SecretString::from(url),
                tuning: PgTuning {
                    pool_size: raw.database_pool_size,
                    writers: raw.database_writers,
                    connect_timeout: secs(nonzero(
                        "database_connect_timeout_secs",
                        raw.database_connect_timeout_secs,
                    )?),
                    statement_timeout: Duration::from_millis(raw.database_statement_timeout_ms),
                },
            }
        }
        Some(_) => {
            return Err(bad(
                "database_url",
                "must start with sqlite: or postgres://",
            ));
        }
    };
    if raw.body_limit < 1024 {
        return Err(bad("body_limit", "must be at least 1024 bytes"));
    }
    let log_format = match raw.log_format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        _ => return Err(bad("log_format", "must be `text` or `json`")),
    };
    let grpc_web_origins = parse_origins(&raw.grpc_web_allowed_origins)?;
    let sms = parse_sms(raw.sms)?;
    let outbox = parse_outbox(raw.outbox)?;
    if outbox.lease <= sms.timeout {
        // Else a send still under way could be claimed again and the SMS sent twice.
        return Err(bad(
            "outbox.lease_secs",
            "must be longer than sms.timeout_secs",
        ));
    }
    // hyper's HTTP/1 read buffer has a floor of 8 KiB (it panics below).
    let max_header_bytes = raw.max_header_bytes;
    if !(8 * 1024..=1024 * 1024).contains(&max_header_bytes) {
        return Err(bad("max_header_bytes", "must be between 8192 and 1048576"));
    }
    Ok(Settings {
        listen,
        data_dir: raw.data_dir,
        database,
        body_limit: raw.body_limit,
        max_connections: match raw.max_connections {
            0 => crate::listener::default_max_connections(),
            n => n,
        },
        idle_timeout: Duration::from_millis(nonzero("idle_timeout_ms", raw.idle_timeout_ms)?),
        http2_max_concurrent_streams: nonzero(
            "http2_max_concurrent_streams",
            raw.http2_max_concurrent_streams,
        )?,
        header_read_timeout: Duration::from_millis(nonzero(
            "header_read_timeout_ms",
            raw.header_read_timeout_ms,
        )?),
        max_header_bytes,
        http2_keepalive_interval: Duration::from_millis(nonzero(
            "http2_keepalive_interval_ms",
            raw.http2_keepalive_interval_ms,
        )?),
        request_timeout: Duration::from_millis(nonzero(
            "request_timeout_ms",
            raw.request_timeout_ms,
        )?),
        max_requests_in_flight: nonzero("max_requests_in_flight", raw.max_requests_in_flight)?,
        log_format,
        grpc_web_origins,
        auth: parse_auth(raw.auth)?,
        i18n: parse_i18n(raw.i18n)?,
        code: parse_code(raw.code)?,
        sms,
        outbox,
        fraud: parse_fraud(raw.fraud)?,
    })
}

/// The comma-separated items of a list setting, trimmed, empty ones skipped.
fn list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|v| !v.is_empty())
}

fn parse_fraud(f: RawFraud) -> Result<FraudSettings, ConfigError> {
    let mut allowed_types = Vec::new();
    for name in list(&f.allowed_number_types) {
        let Some((_, kind)) = NUMBER_TYPES.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = NUMBER_TYPES.iter().map(|(n, _)| *n).collect();
            return Err(bad(
                "fraud.allowed_number_types",
                format!("`{name}` is not one of {}", known.join(", ")),
            ));
        };
        allowed_types.push(*kind);
    }
    let regions = |key: &str, raw: &str| -> Result<(bool, Vec<Region>), ConfigError> {
        let mut all = false;
        let mut out = Vec::new();
        for item in list(raw) {
            match item {
                "*" => all = true,
                code => out.push(code.parse().map_err(|e: String| bad(key, e))?),
            }
        }
        Ok((all, out))
    };
    let (all_geographic, allowed) = regions("fraud.allowed_regions", &f.allowed_regions)?;
    let (star, denied) = regions("fraud.denied_regions", &f.denied_regions)?;
    if star {
        return Err(bad(
            "fraud.denied_regions",
            "`*` is for fraud.allowed_regions",
        ));
    }
    let window = |key: &str, max: u64, secs: u64| {
        if max > 0 && secs == 0 {
            return Err(bad(key, "must be more than 0 when its limit is set"));
        }
        Ok(ms_i64(secs, 1000))
    };
    let minute = |max| Limit::new(max, 60_000);
    Ok(FraudSettings {
        destinations: DestinationPolicy {
            allowed_types,
            regions: RegionRules {
                all_geographic,
                allowed,
                denied,
            },
        },
        limits: SendLimits {
            destination: Limit::new(
                f.destination_max_codes,
                window(
                    "fraud.destination_window_secs",
                    f.destination_max_codes,
                    f.destination_window_secs,
                )?,
            ),
            client: Limit::new(
                f.client_max_codes,
                window(
                    "fraud.client_window_secs",
                    f.client_max_codes,
                    f.client_window_secs,
                )?,
            ),
            region: minute(f.region_max_per_minute),
            global: minute(f.global_max_per_minute),
        },
        trusted_proxies: TrustedProxies(
            list(&f.trusted_proxies)
                .map(|p| {
                    p.parse()
                        .map_err(|e: String| bad("fraud.trusted_proxies", e))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// `*`, or a comma-separated list of origins (`scheme://host[:port]`).
fn parse_origins(raw: &str) -> Result<AllowedOrigins, ConfigError> {
    const KEY: &str = "grpc_web_allowed_origins";
    if raw.trim() == "*" {
        return Ok(AllowedOrigins::Any);
    }
    let mut list = Vec::new();
    for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let url = Url::parse(origin)
            .ok()
            .filter(|u| u.has_host() && matches!(u.path(), "" | "/") && u.query().is_none());
        let Some(url) = url else {
            return Err(bad(
                KEY,
                format!("`{origin}` is not an origin like https://app.example.com"),
            ));
        };
        list.push(url.origin().ascii_serialization());
    }
    if list.is_empty() {
        return Err(bad(KEY, "`*` or at least one origin"));
    }
    Ok(AllowedOrigins::List(list))
}

fn parse_auth(a: RawAuth) -> Result<AuthSettings, ConfigError> {
    let mode = match a.mode.as_str() {
        "local" => AuthMode::Local {
            signing_key: key32("auth.signing_key", &a.signing_key)?,
            token_ttl: secs(nonzero("auth.token_ttl_secs", a.token_ttl_secs)?),
        },
        "jwks" => AuthMode::Jwks {
            url: http_url(
                "auth.jwks_url",
                a.jwks_url.as_deref(),
                " when auth.mode is jwks",
            )?,
            min_refresh: secs(a.jwks_min_refresh_secs),
        },
        other => {
            return Err(bad(
                "auth.mode",
                format!("`{other}` is not `local` or `jwks`"),
            ));
        }
    };
    for (key, value) in [
        ("auth.issuer", &a.issuer),
        ("auth.audience", &a.audience),
        ("auth.resource_owner_claim", &a.resource_owner_claim),
        ("auth.language_claim", &a.language_claim),
    ] {
        if value.is_empty() {
            return Err(bad(key, "must not be empty"));
        }
    }
    let max_token_lifetime = secs(nonzero(
        "auth.max_token_lifetime_secs",
        a.max_token_lifetime_secs,
    )?);
    if let AuthMode::Local { token_ttl, .. } = &mode
        && *token_ttl > max_token_lifetime
    {
        return Err(bad(
            "auth.token_ttl_secs",
            "must not exceed auth.max_token_lifetime_secs (such tokens would be refused)",
        ));
    }
    Ok(AuthSettings {
        mode,
        issuer: a.issuer,
        audience: a.audience,
        resource_owner_claim: a.resource_owner_claim,
        language_claim: a.language_claim,
        leeway_secs: a.leeway_secs,
        max_token_lifetime,
    })
}

fn shipped_language(key: &str, code: &str) -> Result<Language, ConfigError> {
    Language::from_code(code).ok_or_else(|| {
        let all: Vec<&str> = Language::all().map(Language::code).collect();
        bad(
            key,
            format!("`{code}` is not one of the languages: {}", all.join(" ")),
        )
    })
}

fn parse_i18n(i: RawI18n) -> Result<I18nSettings, ConfigError> {
    Ok(I18nSettings {
        default_language: shipped_language("i18n.default_language", &i.default_language)?,
    })
}

fn parse_code(c: RawCode) -> Result<CodeSettings, ConfigError> {
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
    Ok(CodeSettings {
        policy: CodePolicy {
            length: c.length,
            alphabet,
            lifetime_ms: ms_i64(nonzero("code.lifetime_secs", c.lifetime_secs)?, 1000),
            max_attempts: c.max_attempts,
        },
        send: SendPolicy {
            resend_cooldown_ms: ms_i64(c.resend_cooldown_secs, 1000),
            window_ms: ms_i64(c.window_secs, 1000),
            max_per_window: c.max_per_window,
        },
        secret: key32("code.secret", &c.secret)?,
    })
}

fn parse_sms(s: RawSms) -> Result<SmsSettings, ConfigError> {
    let with_code = |key: &str, text: &str| {
        if text.contains("{code}") {
            Ok(())
        } else {
            Err(bad(key, "must contain `{code}`"))
        }
    };
    if let Some(text) = &s.text {
        with_code("sms.text", text)?;
    }
    let mut by_language = Vec::new();
    for (code, text) in s.texts {
        let key = format!("sms.texts.{code}");
        let language = shipped_language(&key, &code)?;
        if !text.is_empty() {
            with_code(&key, &text)?;
            by_language.push((language, text));
        }
    }
    if s.provider != "twilio"
        && s.twilio
            .verify_service_sid
            .as_deref()
            .is_some_and(|v| !v.is_empty())
    {
        // Set expecting Verify mode, it would otherwise be ignored without a word.
        return Err(bad(
            "sms.twilio.verify_service_sid",
            "Verify mode needs sms.provider = twilio",
        ));
    }
    let provider = match s.provider.as_str() {
        "log" => SmsProvider::Log { file: s.log_file },
        "http" => SmsProvider::Http {
            url: http_url(
                "sms.http.url",
                s.http.url.as_deref(),
                " when sms.provider is http",
            )?,
            signing_key: s.http.signing_key.map(SecretString::from),
        },
        "twilio" => {
            let t = s.twilio;
            let required = |key: &str, v: Option<String>| {
                v.filter(|v| !v.is_empty())
                    .ok_or_else(|| bad(key, "required when sms.provider is twilio"))
            };
            let account_sid = required("sms.twilio.account_sid", t.account_sid)?;
            let auth_token = required("sms.twilio.auth_token", t.auth_token)?;
            if let Some(service_sid) = t.verify_service_sid.filter(|v| !v.is_empty()) {
                // It goes into the URL path: only the shape Twilio gives out.
                if !(service_sid.starts_with("VA")
                    && service_sid.len() <= 200
                    && service_sid.chars().all(|c| c.is_ascii_alphanumeric()))
                {
                    return Err(bad(
                        "sms.twilio.verify_service_sid",
                        "must be a Verify Service SID (`VA` and letters or digits)",
                    ));
                }
                // The sender is not needed: Twilio Verify sends from its own numbers.
                SmsProvider::TwilioVerify(TwilioVerifySettings {
                    base_url: http_url("sms.twilio.verify_base_url", Some(&t.verify_base_url), "")?,
                    account_sid,
                    auth_token: SecretString::from(auth_token),
                    service_sid,
                })
            } else {
                let sender = match (t.from, t.messaging_service_sid) {
                    (Some(from), None) => TwilioSender::From(from),
                    (None, Some(sid)) => TwilioSender::MessagingService(sid),
                    _ => {
                        return Err(bad(
                            "sms.twilio.from",
                            "set exactly one of sms.twilio.from and sms.twilio.messaging_service_sid",
                        ));
                    }
                };
                SmsProvider::Twilio(TwilioSettings {
                    base_url: http_url("sms.twilio.base_url", Some(&t.base_url), "")?,
                    account_sid,
                    auth_token: SecretString::from(auth_token),
                    sender,
                })
            }
        }
        other => {
            return Err(bad(
                "sms.provider",
                format!("`{other}` is not `log`, `http` or `twilio`"),
            ));
        }
    };
    Ok(SmsSettings {
        provider,
        texts: SmsTexts {
            all: s.text,
            by_language,
        },
        timeout: secs(nonzero("sms.timeout_secs", s.timeout_secs)?),
        encryption_key: key32("sms.encryption_key", &s.encryption_key)?,
    })
}

fn parse_outbox(o: RawOutbox) -> Result<OutboxSettings, ConfigError> {
    if o.max_attempts == 0 {
        return Err(bad("outbox.max_attempts", "must be at least 1"));
    }
    if o.batch_size == 0 || o.batch_size > 1000 {
        return Err(bad("outbox.batch_size", "must be between 1 and 1000"));
    }
    if !(1..=1000).contains(&o.concurrency) {
        return Err(bad("outbox.concurrency", "must be between 1 and 1000"));
    }
    Ok(OutboxSettings {
        worker: o.worker,
        max_attempts: o.max_attempts,
        max_age: secs(o.max_age_secs),
        lease: secs(nonzero("outbox.lease_secs", o.lease_secs)?),
        poll_interval: Duration::from_millis(nonzero(
            "outbox.poll_interval_ms",
            o.poll_interval_ms,
        )?),
        base_backoff: Duration::from_millis(o.base_backoff_ms.max(1)),
        max_backoff: secs(o.max_backoff_secs),
        batch_size: o.batch_size,
        concurrency: o.concurrency,
    })
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
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(matches!(
            s.auth.mode,
            AuthMode::Local {
                signing_key: None,
                ..
            }
        ));
        assert!(matches!(s.sms.provider, SmsProvider::Log { file: None }));
        assert!(
            s.database_url()
                .expose_secret()
                .ends_with("phoneproof-data/phoneproof.db")
        );
    }

    #[test]
    fn postgres_writers_default_to_two_and_can_be_set() {
        let url = ("PHONEPROOF_DATABASE_URL", "postgres://db/phoneproof");
        let s = Settings::load(None, &env(&[url])).unwrap();
        assert_eq!(s.pg_tuning().writers, 2);
        let s = Settings::load(
            None,
            &env(&[
                url,
                ("PHONEPROOF_DATABASE_POOL_SIZE", "4"),
                ("PHONEPROOF_DATABASE_WRITERS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(s.pg_tuning().writers, 3);
        assert!(s.to_string().contains("(4 connections, 3 writers,"), "{s}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[code]\nlength = 8\nalphabet = \"ABC\"\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            &env(&[
                ("PHONEPROOF_CODE_LENGTH", "10"),
                ("PHONEPROOF_OUTBOX_WORKER", "no"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.code.policy.length, 10);
        assert_eq!(s.code.policy.alphabet, vec!['A', 'B', 'C']);
        assert!(!s.outbox.worker);
    }

    #[test]
    fn text_values_that_look_like_numbers_stay_text() {
        let s = Settings::load(
            None,
            &env(&[
                ("PHONEPROOF_CODE_ALPHABET", "0123456789"),
                ("PHONEPROOF_AUTH_AUDIENCE", "00042"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.code.policy.alphabet.iter().collect::<String>(),
            "0123456789"
        );
        assert_eq!(s.auth.audience, "00042");
    }

    #[test]
    fn every_key_has_its_environment_name() {
        let names = env_names();
        for (env, key) in [
            ("PHONEPROOF_LISTEN", "listen"),
            (
                "PHONEPROOF_DATABASE_STATEMENT_TIMEOUT_MS",
                "database_statement_timeout_ms",
            ),
            ("PHONEPROOF_SMS_HTTP_URL", "sms.http.url"),
            (
                "PHONEPROOF_SMS_TWILIO_MESSAGING_SERVICE_SID",
                "sms.twilio.messaging_service_sid",
            ),
            ("PHONEPROOF_CODE_SECRET", "code.secret"),
            (
                "PHONEPROOF_SMS_TWILIO_VERIFY_SERVICE_SID",
                "sms.twilio.verify_service_sid",
            ),
            (
                "PHONEPROOF_SMS_TWILIO_VERIFY_BASE_URL",
                "sms.twilio.verify_base_url",
            ),
            ("PHONEPROOF_AUTH_LANGUAGE_CLAIM", "auth.language_claim"),
            ("PHONEPROOF_I18N_DEFAULT_LANGUAGE", "i18n.default_language"),
            ("PHONEPROOF_SMS_TEXT", "sms.text"),
            ("PHONEPROOF_SMS_TEXTS_DE", "sms.texts.de"),
            ("PHONEPROOF_SMS_TEXTS_ZH", "sms.texts.zh"),
        ] {
            assert_eq!(names.get(env).map(String::as_str), Some(key), "{env}");
        }
        assert_eq!(names.len(), 91, "{names:?}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("PHONEPROOF_LISTEN", "nowhere")], "`listen`"),
            (&[("PHONEPROOF_CODE_LENGTH", "six")], "`code.length`"),
            (
                &[("PHONEPROOF_CODE_LENGTH", "six")],
                "PHONEPROOF_CODE_LENGTH",
            ),
            (&[("PHONEPROOF_CODE_LENGTH", "2")], "`code.length`"),
            (&[("PHONEPROOF_CODE_ALPHABET", "AAB")], "`code.alphabet`"),
            (&[("PHONEPROOF_AUTH_MODE", "jwks")], "`auth.jwks_url`"),
            (&[("PHONEPROOF_AUTH_MODE", "oidc")], "`auth.mode`"),
            (&[("PHONEPROOF_SMS_PROVIDER", "http")], "`sms.http.url`"),
            (
                &[("PHONEPROOF_SMS_PROVIDER", "twilio")],
                "`sms.twilio.account_sid`",
            ),
            (&[("PHONEPROOF_CODE_SECRET", "short")], "`code.secret`"),
            (
                &[("PHONEPROOF_SMS_TWILIO_VERIFY_SERVICE_SID", "VA1")],
                "`sms.twilio.verify_service_sid`",
            ),
            (
                &[("PHONEPROOF_I18N_DEFAULT_LANGUAGE", "fi")],
                "`i18n.default_language`",
            ),
            (&[("PHONEPROOF_SMS_TEXT", "no code")], "`sms.text`"),
            (
                &[("PHONEPROOF_SMS_TEXTS_FR", "sans code")],
                "`sms.texts.fr`",
            ),
            (
                &[("PHONEPROOF_AUTH_LANGUAGE_CLAIM", "")],
                "`auth.language_claim`",
            ),
            (&[("PHONEPROOF_OUTBOX_WORKER", "maybe")], "`outbox.worker`"),
            (
                &[("PHONEPROOF_SMS_TIMEOUT_SECS", "30")],
                "`outbox.lease_secs`",
            ),
            (
                &[("PHONEPROOF_OUTBOX_CONCURRENCY", "0")],
                "`outbox.concurrency`",
            ),
            (
                &[("PHONEPROOF_GRPC_WEB_ALLOWED_ORIGINS", "not an origin")],
                "`grpc_web_allowed_origins`",
            ),
            (
                &[("PHONEPROOF_FRAUD_ALLOWED_NUMBER_TYPES", "mobile,landline")],
                "`fraud.allowed_number_types`",
            ),
            (
                &[("PHONEPROOF_FRAUD_ALLOWED_REGIONS", "CH,Switzerland")],
                "`fraud.allowed_regions`",
            ),
            (
                &[("PHONEPROOF_FRAUD_DENIED_REGIONS", "*")],
                "`fraud.denied_regions`",
            ),
            (
                &[("PHONEPROOF_FRAUD_DESTINATION_WINDOW_SECS", "0")],
                "`fraud.destination_window_secs`",
            ),
            (
                &[
                    ("PHONEPROOF_FRAUD_CLIENT_MAX_CODES", "10"),
                    ("PHONEPROOF_FRAUD_CLIENT_WINDOW_SECS", "0"),
                ],
                "`fraud.client_window_secs`",
            ),
            (
                &[(
                    "PHONEPROOF_FRAUD_TRUSTED_PROXIES",
                    "10.0.0.0/8, proxy.local",
                )],
                "`fraud.trusted_proxies`",
            ),
            (
                &[
                    ("PHONEPROOF_DATABASE_URL", "postgres://db/phoneproof"),
                    ("PHONEPROOF_DATABASE_WRITERS", "0"),
                ],
                "`database_writers`",
            ),
            (
                &[
                    ("PHONEPROOF_DATABASE_URL", "postgres://db/phoneproof"),
                    ("PHONEPROOF_DATABASE_POOL_SIZE", "4"),
                    ("PHONEPROOF_DATABASE_WRITERS", "4"),
                ],
                "`database_writers`",
            ),
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
    fn sms_texts_are_set_per_language_then_for_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[sms]\ntext = \"Code {code}\"\n[sms.texts]\nde = \"Dein Code {code}\"\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            &env(&[("PHONEPROOF_SMS_TEXTS_FR", "Votre code {code}")]),
        )
        .unwrap();
        let text = |code: &str| s.sms.texts.get(Language::from_code(code).unwrap());
        assert_eq!(text("de"), Some("Dein Code {code}"));
        assert_eq!(text("fr"), Some("Votre code {code}"));
        assert_eq!(text("ja"), Some("Code {code}"));
        let defaults = Settings::default();
        assert!(Language::all().all(|l| defaults.sms.texts.get(l).is_none()));
        assert_eq!(defaults.i18n.default_language, Language::ENGLISH);
        assert_eq!(defaults.auth.language_claim, "locale");

        std::fs::write(&path, "[sms.texts]\nxx = \"{code}\"\n").unwrap();
        let err = Settings::load(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sms.texts.xx`"), "{err}");
    }

    #[test]
    fn fraud_lists_parse_into_the_destination_policy() {
        let d = Settings::default().fraud.destinations;
        assert_eq!(d, DestinationPolicy::default());
        assert_eq!(Settings::default().fraud.limits, SendLimits::default());
        let s = Settings::load(
            None,
            &env(&[
                ("PHONEPROOF_FRAUD_ALLOWED_NUMBER_TYPES", "mobile, voip"),
                ("PHONEPROOF_FRAUD_ALLOWED_REGIONS", "CH,DE, 881"),
                ("PHONEPROOF_FRAUD_DENIED_REGIONS", "DE"),
            ]),
        )
        .unwrap();
        let d = s.fraud.destinations;
        assert_eq!(
            d.allowed_types,
            vec![
                crate::domain::NumberType::Mobile,
                crate::domain::NumberType::Voip
            ]
        );
        assert!(!d.regions.all_geographic);
        assert_eq!(d.regions.allowed.len(), 3);
        assert_eq!(d.regions.denied, vec!["DE".parse().unwrap()]);
        let s = Settings::load(
            None,
            &env(&[
                ("PHONEPROOF_FRAUD_CLIENT_MAX_CODES", "20"),
                ("PHONEPROOF_FRAUD_TRUSTED_PROXIES", "10.0.0.0/8,2001:db8::1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.fraud.limits.client, Limit::new(20, 3_600_000));
        assert_eq!(s.fraud.trusted_proxies.0.len(), 2);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[code]\nlenght = 8\n").unwrap();
        let err = Settings::load(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`code.lenght`"), "{err}");
        assert!(err.contains("c.toml"), "{err}");
    }

    #[test]
    fn grpc_web_origins_are_any_or_a_list() {
        let origins = |v: &str| {
            Settings::load(None, &env(&[("PHONEPROOF_GRPC_WEB_ALLOWED_ORIGINS", v)]))
                .map(|s| s.grpc_web_origins)
        };
        assert_eq!(Settings::default().grpc_web_origins, AllowedOrigins::Any);
        assert_eq!(
            origins("https://a.example, http://localhost:5173/").unwrap(),
            AllowedOrigins::List(vec![
                "https://a.example".into(),
                "http://localhost:5173".into()
            ])
        );
        assert!(origins("https://a.example/path").is_err());
        assert!(origins(" , ").is_err());
    }

    #[test]
    fn a_verify_service_sid_turns_verify_mode_on_without_a_sender() {
        let twilio = [
            ("PHONEPROOF_SMS_PROVIDER", "twilio"),
            ("PHONEPROOF_SMS_TWILIO_ACCOUNT_SID", "AC1"),
            ("PHONEPROOF_SMS_TWILIO_AUTH_TOKEN", "tw-verify-token"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let vars: Vec<(&str, &str)> = twilio.iter().chain(extra).copied().collect();
            Settings::load(None, &env(&vars))
        };
        let s = with(&[("PHONEPROOF_SMS_TWILIO_VERIFY_SERVICE_SID", "VA0123abcd")]).unwrap();
        let SmsProvider::TwilioVerify(v) = &s.sms.provider else {
            panic!("not Verify mode: {:?}", s.sms.provider);
        };
        assert_eq!(v.service_sid, "VA0123abcd");
        assert_eq!(v.base_url.as_str(), "https://verify.twilio.com/");
        let summary = s.to_string();
        assert!(
            summary.contains("Twilio Verify mode (service VA0123abcd)"),
            "{summary}"
        );
        assert!(!summary.contains("tw-verify-token"), "{summary}");
        // Without it, the Messages API needs a sender as before.
        let err = with(&[]).unwrap_err().to_string();
        assert!(err.contains("`sms.twilio.from`"), "{err}");
        for bad_sid in ["MG123", "VA12/../x", "VA1?x=1"] {
            let vars: Vec<(&str, &str)> = twilio
                .iter()
                .copied()
                .chain([("PHONEPROOF_SMS_TWILIO_VERIFY_SERVICE_SID", bad_sid)])
                .collect();
            let err = Settings::load(None, &env(&vars)).unwrap_err().to_string();
            assert!(
                err.contains("`sms.twilio.verify_service_sid`"),
                "{bad_sid}: {err}"
            );
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/phoneproof.toml")), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`--config`"), "{err}");
    }

    #[test]
    fn secrets_show_neither_in_debug_nor_in_the_summary() {
        let token = "tw-secret-token-value";
        let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; // 32 zero bytes
        let s = Settings::load(
            None,
            &env(&[
                (
                    "PHONEPROOF_DATABASE_URL",
                    "postgres://app:pg-password@db:5432/pp",
                ),
                ("PHONEPROOF_SMS_PROVIDER", "twilio"),
                ("PHONEPROOF_SMS_TWILIO_ACCOUNT_SID", "AC1"),
                ("PHONEPROOF_SMS_TWILIO_AUTH_TOKEN", token),
                ("PHONEPROOF_SMS_TWILIO_FROM", "+15005550006"),
                ("PHONEPROOF_CODE_SECRET", key),
                ("PHONEPROOF_AUTH_SIGNING_KEY", key),
            ]),
        )
        .unwrap();
        for shown in [format!("{s:?}"), s.to_string()] {
            assert!(!shown.contains("pg-password"), "{shown}");
            assert!(!shown.contains(token), "{shown}");
            assert!(!shown.contains(key), "{shown}");
            assert!(!shown.contains("[0, 0, 0"), "{shown}");
        }
        let summary = s.to_string();
        assert!(summary.contains("PostgreSQL at db:5432/pp"), "{summary}");
        assert!(summary.contains("Twilio"), "{summary}");
    }
}
