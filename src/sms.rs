//! SMS providers behind one interface: `log` (local use), ZITADEL's HTTP webhook, Twilio,
//! and Twilio Verify (which makes the code itself).
pub mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use crate::config::{SmsProvider, SmsSettings, TwilioSender};
use crate::domain::mask_phone;

/// A message as the worker delivers it, after decryption. Never logged whole.
#[derive(Clone, Serialize, Deserialize)]
pub struct SmsMessage {
    pub to: String,
    /// The SMS body.
    pub text: String,
    /// Empty when Twilio Verify makes the code (and writes the SMS).
    pub code: String,
    pub event_type: String,
    /// The language recorded with the code (a BCP 47 tag), when there is one: Twilio Verify
    /// is asked to write the SMS in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// ZITADEL's other `VerifyPhone` texts in the message's language, for the HTTP
    /// provider; absent in messages sealed before they were added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SmsTemplate>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct SmsTemplate {
    pub title: String,
    pub pre_header: String,
    pub subject: String,
    pub greeting: String,
    pub button_text: String,
}

impl std::fmt::Debug for SmsMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmsMessage(to {})", mask_phone(&self.to))
    }
}

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent {
        reason: String,
    },
}

/// What a provider reported on accepting a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Twilio Verify's id of the verification it started (`VE…`).
    pub verification_sid: Option<String>,
}

pub enum Provider {
    Log(LogProvider),
    Http(HttpProvider),
    Twilio(TwilioProvider),
    TwilioVerify(verify::TwilioVerify),
}

impl Provider {
    pub fn from_settings(s: &SmsSettings) -> Provider {
        let client = http_client(s.timeout);
        match &s.provider {
            SmsProvider::Log { file } => Provider::Log(LogProvider { file: file.clone() }),
            SmsProvider::Http { url, signing_key } => Provider::Http(HttpProvider {
                client,
                url: url.to_string(),
                signing_key: signing_key.clone(),
            }),
            SmsProvider::Twilio(t) => Provider::Twilio(TwilioProvider {
                client,
                base_url: t.base_url.as_str().trim_end_matches('/').to_owned(),
                account_sid: t.account_sid.clone(),
                auth_token: t.auth_token.clone(),
                sender: t.sender.clone(),
            }),
            SmsProvider::TwilioVerify(v) => {
                Provider::TwilioVerify(verify::TwilioVerify::new(v, client))
            }
        }
    }

    /// Whether this provider makes the codes itself (then messages carry none).
    pub fn makes_codes(&self) -> bool {
        matches!(self, Provider::TwilioVerify(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Provider::Log(_) => "log",
            Provider::Http(_) => "http",
            Provider::Twilio(_) => "twilio",
            Provider::TwilioVerify(_) => "twilio_verify",
        }
    }

    /// Sends one message; `message_id` is stable across retries (the idempotency key).
    pub async fn send(&self, message_id: &str, msg: &SmsMessage) -> Result<Accepted, SendError> {
        let verification_sid = match self {
            Provider::Log(p) => p.send(message_id, msg).map(|()| None)?,
            Provider::Http(p) => p.send(message_id, msg).await.map(|()| None)?,
            Provider::Twilio(p) => p.send(msg).await.map(|()| None)?,
            Provider::TwilioVerify(p) => p.start(msg).await?,
        };
        Ok(Accepted { verification_sid })
    }
}

/// The client every provider (and Verify mode's checks) uses: the timeout bounds connecting
/// and the whole exchange.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .expect("a TLS backend is compiled in")
}

/// Writes messages to the service log and, when configured, one JSON line each to a file.
pub struct LogProvider {
    file: Option<PathBuf>,
}

impl LogProvider {
    fn send(&self, message_id: &str, msg: &SmsMessage) -> Result<(), SendError> {
        // The log sink exists so a local user can read the code: the text is the point here.
        tracing::info!(target: "phoneproof::sms_log", message_id, to = %mask_phone(&msg.to), text = %msg.text, "SMS (log provider)");
        if let Some(path) = &self.file {
            let line = json!({"to": msg.to, "text": msg.text}).to_string() + "\n";
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| SendError::Transient {
                    reason: format!("cannot open SMS log file: {e}"),
                    retry_after: None,
                })?;
            f.write_all(line.as_bytes())
                .map_err(|e| SendError::Transient {
                    reason: format!("cannot write SMS log file: {e}"),
                    retry_after: None,
                })?;
        }
        Ok(())
    }
}

/// `Retry-After` in seconds, when the provider sent one.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn transport_error(e: reqwest::Error) -> SendError {
    // Never include the URL: a Twilio URL carries the account id, a webhook URL may carry a token.
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    SendError::Transient {
        reason: kind.to_owned(),
        retry_after: None,
    }
}

/// 429, 408 and 5xx may pass; any other 4xx will not.
fn classify_status(
    status: reqwest::StatusCode,
    retry: Option<Duration>,
    detail: String,
) -> SendError {
    if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
        SendError::Transient {
            reason: detail,
            retry_after: retry,
        }
    } else {
        SendError::Permanent { reason: detail }
    }
}

/// The signature header value: `t=<unix>,v1=<hex HMAC-SHA-256 of "<t>.<body>">`.
pub fn webhook_signature(key: &[u8], unix: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key size");
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// ZITADEL's HTTP provider contract, signed when a key is configured.
pub struct HttpProvider {
    client: reqwest::Client,
    url: String,
    signing_key: Option<SecretString>,
}

impl HttpProvider {
    async fn send(&self, message_id: &str, msg: &SmsMessage) -> Result<(), SendError> {
        let template_data = match &msg.template {
            Some(t) => json!({
                "title": t.title,
                "preHeader": t.pre_header,
                "subject": t.subject,
                "greeting": t.greeting,
                "text": msg.text,
                "buttonText": t.button_text,
            }),
            None => json!({"text": msg.text}),
        };
        let body = json!({
            "contextInfo": {
                "eventType": msg.event_type,
                "provider": {"id": "phoneproof", "description": "phoneproof HTTP provider"},
                "recipientPhoneNumber": msg.to,
            },
            "templateData": template_data,
            "args": {"code": msg.code},
        })
        .to_string();
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", message_id);
        if let Some(key) = &self.signing_key {
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            req = req.header(
                "phoneproof-signature",
                webhook_signature(key.expose_secret().as_bytes(), unix, body.as_bytes()),
            );
        }
        let resp = req.body(body).send().await.map_err(transport_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(classify_status(
            status,
            retry_after(&resp),
            format!("HTTP {status}"),
        ))
    }
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
}

/// Twilio's Messages API.
pub struct TwilioProvider {
    client: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: SecretString,
    sender: TwilioSender,
}

impl TwilioProvider {
    async fn send(&self, msg: &SmsMessage) -> Result<(), SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url, self.account_sid
        );
        let mut form: Vec<(&str, &str)> = vec![("To", &msg.to), ("Body", &msg.text)];
        match &self.sender {
            TwilioSender::MessagingService(sid) => form.push(("MessagingServiceSid", sid)),
            TwilioSender::From(from) => form.push(("From", from)),
        }
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.account_sid,
            self.auth_token.expose_secret()
        ));
        let resp = self
            .client
            .post(url)
            .header("authorization", format!("Basic {basic}"))
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry = retry_after(&resp);
        let code = resp
            .json::<TwilioError>()
            .await
            .ok()
            .and_then(|e| e.code)
            .map(|c| format!(" (Twilio error {c})"))
            .unwrap_or_default();
        Err(classify_status(
            status,
            retry,
            format!("HTTP {status}{code}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_over_timestamp_dot_body() {
        let sig = webhook_signature(b"key", 1_700_000_000, b"{}");
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"key").unwrap();
        mac.update(b"1700000000.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1700000000,v1={expected}"));
    }

    #[test]
    fn statuses_are_classified() {
        use reqwest::StatusCode as S;
        assert!(matches!(
            classify_status(S::TOO_MANY_REQUESTS, None, String::new()),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            classify_status(S::BAD_GATEWAY, None, String::new()),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            classify_status(S::BAD_REQUEST, None, String::new()),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            classify_status(S::UNAUTHORIZED, None, String::new()),
            SendError::Permanent { .. }
        ));
    }
}
