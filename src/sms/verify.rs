//! Twilio Verify (v2): starts a verification (Twilio makes and sends the code) and checks a
//! code against it. Only this module talks to Twilio Verify; it never logs a code or a secret.
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{SendError, SmsMessage, TwilioError, classify_status, retry_after, transport_error};
use crate::config::TwilioVerifySettings;
use crate::domain::{CheckResult, CheckTarget};

/// Twilio's error codes that decide something here.
const MAX_CHECK_ATTEMPTS: i64 = 60202;
const MAX_SEND_ATTEMPTS: i64 = 60203;
const FRAUD_GUARD_BLOCK: i64 = 60410;
const INVALID_PARAMETER: i64 = 60200;

/// Why a check got no answer about the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// Unreachable, 5xx or 429: waiting helps, and the user is not to blame.
    #[error("Twilio Verify is unavailable: {0}")]
    Unavailable(String),
    /// Twilio refused the request itself (credentials, service sid): an operator must act.
    #[error("Twilio Verify refused the check: {0}")]
    Refused(String),
}

#[derive(Clone)]
pub struct TwilioVerify {
    client: reqwest::Client,
    base_url: String,
    service_sid: String,
    account_sid: String,
    auth_token: SecretString,
}

#[derive(Deserialize)]
struct Verification {
    sid: Option<String>,
    status: Option<String>,
}

impl TwilioVerify {
    pub fn new(settings: &TwilioVerifySettings, client: reqwest::Client) -> Self {
        Self {
            client,
            base_url: settings.base_url.as_str().trim_end_matches('/').to_owned(),
            service_sid: settings.service_sid.clone(),
            account_sid: settings.account_sid.clone(),
            auth_token: settings.auth_token.clone(),
        }
    }

    async fn post(
        &self,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let url = format!(
            "{}/v2/Services/{}/{endpoint}",
            self.base_url, self.service_sid
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.account_sid,
            self.auth_token.expose_secret()
        ));
        self.client
            .post(url)
            .header("authorization", format!("Basic {basic}"))
            .form(form)
            .send()
            .await
    }

    /// Starts a verification by SMS to the message's number; Twilio makes and sends the code.
    /// Returns the verification's sid when Twilio named it.
    pub async fn start(&self, msg: &SmsMessage) -> Result<Option<String>, SendError> {
        let mut form = vec![("To", msg.to.as_str()), ("Channel", "sms")];
        if let Some(locale) = &msg.language {
            form.push(("Locale", locale));
        }
        let resp = self
            .post("Verifications", &form)
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        if status.is_success() {
            let sid = resp.json::<Verification>().await.ok().and_then(|v| v.sid);
            return Ok(sid);
        }
        let retry = retry_after(&resp);
        let code = resp.json::<TwilioError>().await.ok().and_then(|e| e.code);
        let detail = match code {
            Some(c) => format!("HTTP {status} (Twilio error {c})"),
            None => format!("HTTP {status}"),
        };
        match code {
            // Both come as 429/403 but will not pass by retrying within the outbox's patience:
            // 60203 lasts until Twilio's verification expires, 60410 up to 12 hours.
            Some(MAX_SEND_ATTEMPTS | FRAUD_GUARD_BLOCK) => {
                Err(SendError::Permanent { reason: detail })
            }
            _ => Err(classify_status(status, retry, detail)),
        }
    }

    /// Asks Twilio whether `code` is right for `target`.
    pub async fn check(&self, target: &CheckTarget, code: &str) -> Result<CheckResult, CheckError> {
        let mut form = vec![("Code", code)];
        match target {
            CheckTarget::Sid(sid) => form.push(("VerificationSid", sid)),
            CheckTarget::To(phone) => form.push(("To", phone.as_ref())),
        }
        let resp =
            self.post("VerificationCheck", &form)
                .await
                .map_err(|e| match transport_error(e) {
                    SendError::Transient { reason, .. } | SendError::Permanent { reason } => {
                        CheckError::Unavailable(reason)
                    }
                })?;
        let status = resp.status();
        if status.is_success() {
            let v = resp.json::<Verification>().await.map_err(|_| {
                CheckError::Unavailable(format!("HTTP {status} with an unreadable body"))
            })?;
            let sid = v.sid.unwrap_or_default();
            let answer = v.status.unwrap_or_default();
            tracing::info!(verification_sid = %sid, status = %answer, "Twilio Verify check answered");
            return Ok(match answer.as_str() {
                "approved" => CheckResult::Approved,
                "max_attempts_reached" => CheckResult::AttemptsExhausted,
                // pending (a wrong code), expired, canceled, deleted, failed, and any new one.
                _ => CheckResult::Rejected,
            });
        }
        let twilio_code = resp.json::<TwilioError>().await.ok().and_then(|e| e.code);
        let detail = match twilio_code {
            Some(c) => format!("HTTP {status} (Twilio error {c})"),
            None => format!("HTTP {status}"),
        };
        tracing::info!(
            http_status = status.as_u16(),
            twilio_code,
            "Twilio Verify check refused"
        );
        match (status.as_u16(), twilio_code) {
            (429, Some(MAX_CHECK_ATTEMPTS)) => Ok(CheckResult::AttemptsExhausted),
            // The verification is over (approved, expired, checked out) or never existed.
            (404, _) => Ok(CheckResult::Rejected),
            // A code of a shape Twilio's service does not accept.
            (400, Some(INVALID_PARAMETER)) => Ok(CheckResult::Rejected),
            (429 | 408, _) => Err(CheckError::Unavailable(detail)),
            (s, _) if s >= 500 => Err(CheckError::Unavailable(detail)),
            _ => Err(CheckError::Refused(detail)),
        }
    }
}
