//! The one boundary error: every failure the API answers, mapped to google.rpc.Status JSON.
//!
//! The catalog (id, text, gRPC code, HTTP status) lives here and nowhere else; the OpenAPI
//! document and the tests read it from here too.
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Response, error::ResponseError};
use serde_json::{Value, json};

use std::borrow::Cow;

use crate::app::AppError;
use crate::domain::{DomainError, Rule};
use crate::i18n::{self, Language};
use crate::sms::verify::CheckError;
use crate::store::StoreError;

pub const ERROR_DETAIL_TYPE: &str = "type.googleapis.com/zitadel.v1.ErrorDetail";

/// Every error the service answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("auth header missing")]
    AuthHeaderMissing,
    #[error("invalid auth header")]
    AuthHeaderInvalid,
    #[error("token invalid")]
    TokenInvalid,
    /// Request validation: code 3, no details, the message as the contract words it.
    #[error("{0}")]
    Validation(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A concurrent writer won and retrying did not help.
    #[error("aborted")]
    Aborted,
    #[error("storage unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
    #[error("not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

/// One row of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    pub grpc_code: i32,
    pub http_status: u16,
    pub id: Option<&'static str>,
    /// The English text.
    pub text: &'static str,
    /// ZITADEL's i18n key, for the rows it translates: the text in other languages is that
    /// message of `src/i18n/locales/<language>.ftl`. Rows without one are English everywhere.
    pub key: Option<&'static str>,
}

const fn row(grpc_code: i32, id: Option<&'static str>, text: &'static str) -> CatalogEntry {
    CatalogEntry {
        grpc_code,
        http_status: http_status_for(grpc_code),
        id,
        text,
        key: None,
    }
}

impl CatalogEntry {
    const fn translated(self, key: &'static str) -> CatalogEntry {
        CatalogEntry {
            key: Some(key),
            ..self
        }
    }

    /// The text in `language`; English where that language's file has none.
    pub fn text_in(&self, language: Language) -> Cow<'static, str> {
        self.key
            .and_then(|key| i18n::text(language, key))
            .map_or(Cow::Borrowed(self.text), Cow::Owned)
    }
}

/// gRPC code to HTTP status, as grpc-gateway maps them.
pub const fn http_status_for(grpc_code: i32) -> u16 {
    match grpc_code {
        3 | 9 => 400,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

impl ApiError {
    pub fn entry(&self) -> CatalogEntry {
        match self {
            ApiError::AuthHeaderMissing => row(16, None, "auth header missing"),
            // Current ZITADEL's id (releases before 2025 answered AUTH-7fs1e here too).
            ApiError::AuthHeaderInvalid => row(16, Some("AUTH-toLo1"), "invalid auth header"),
            ApiError::TokenInvalid => row(16, Some("AUTH-7fs1e"), "Errors.Token.Invalid"),
            ApiError::Validation(_) => row(3, None, "invalid request"),
            ApiError::PayloadTooLarge => CatalogEntry {
                http_status: 413,
                ..row(3, None, "request body too large")
            },
            ApiError::UnsupportedMediaType => CatalogEntry {
                http_status: 415,
                ..row(3, None, "unsupported content type: send application/json")
            },
            ApiError::UnsupportedEncoding => CatalogEntry {
                http_status: 415,
                ..row(
                    3,
                    None,
                    "unsupported content encoding: send the body uncompressed",
                )
            },
            ApiError::Domain(e) => match e {
                DomainError::PhoneInvalid => row(3, Some("PHONE-so0wa"), "Phone is invalid")
                    .translated("Errors.User.Phone.Invalid"),
                DomainError::PhoneNotChanged => row(9, Some("COMMAND-wF94r"), "Phone not changed")
                    .translated("Errors.User.Phone.NotChanged"),
                DomainError::CodeNotFound => row(5, Some("COMMAND-Rsj8c"), "Code not found")
                    .translated("Errors.User.Code.NotFound"),
                DomainError::CodeInvalid => row(3, Some("COMMAND-sM0cs"), "Code is invalid")
                    .translated("Errors.User.Code.Invalid"),
                DomainError::ResendPhoneNotFound => {
                    row(5, Some("COMMAND-2b7Hf"), "Phone not found")
                        .translated("Errors.User.Phone.NotFound")
                }
                DomainError::PhoneAlreadyVerified => {
                    row(9, Some("COMMAND-2M9sf"), "Phone already verified")
                        .translated("Errors.User.Phone.AlreadyVerified")
                }
                DomainError::RemovePhoneNotFound => {
                    row(5, Some("COMMAND-p6rsc"), "Phone not found")
                        .translated("Errors.User.Phone.NotFound")
                }
                DomainError::TooManyAttempts => row(
                    8,
                    Some("PHONEPROOF-atmp5"),
                    "Too many wrong codes; request a new code",
                ),
                // Per user and per client address alike: which one does not help the caller.
                DomainError::SendThrottled { .. }
                | DomainError::SendLimited {
                    rule: Rule::User | Rule::ClientAddress,
                    ..
                } => row(
                    8,
                    Some("PHONEPROOF-thr0t"),
                    "Too many codes requested; try again later",
                ),
                // Type and region alike: the user needs another number either way.
                DomainError::NumberRefused(_) => row(
                    3,
                    Some("PHONEPROOF-nosms"),
                    "Codes cannot be sent to this phone number",
                ),
                DomainError::SendLimited {
                    rule: Rule::Destination,
                    ..
                } => row(
                    8,
                    Some("PHONEPROOF-dest1"),
                    "Too many codes sent to this phone number; try again later",
                ),
                // The circuit breakers, and any other limit: the service, not the caller.
                DomainError::SendLimited { .. } => row(
                    8,
                    Some("PHONEPROOF-busy1"),
                    "Too many codes are being sent right now; try again later",
                ),
            },
            ApiError::Aborted => row(
                10,
                Some("PHONEPROOF-abrt1"),
                "Concurrent modification; retry the request",
            ),
            ApiError::Unavailable => row(
                14,
                Some("PHONEPROOF-unav1"),
                "Service temporarily unavailable; retry later",
            ),
            ApiError::Internal => row(13, Some("PHONEPROOF-intl1"), "Internal error"),
            ApiError::RouteNotFound => row(5, None, "Not Found"),
            // grpc-gateway answers a wrong method with 405 although code 12 is otherwise 501.
            ApiError::MethodNotAllowed => CatalogEntry {
                http_status: 405,
                ..row(12, None, "Method Not Allowed")
            },
        }
    }

    /// The google.rpc.Status body in English.
    pub fn body(&self) -> Value {
        self.body_in(Language::ENGLISH)
    }

    /// The text this error answers in `language`: validation messages are the same in all.
    pub fn text_in(&self, language: Language) -> Cow<'static, str> {
        match self {
            ApiError::Validation(message) => Cow::Owned(message.clone()),
            _ => self.entry().text_in(language),
        }
    }

    /// The google.rpc.Status body in `language`.
    pub fn body_in(&self, language: Language) -> Value {
        let entry = self.entry();
        let text = self.text_in(language);
        match entry.id {
            Some(id) => json!({
                "code": entry.grpc_code,
                "message": format!("{text} ({id})"),
                "details": [{"@type": ERROR_DETAIL_TYPE, "id": id, "message": text}],
            }),
            None => json!({"code": entry.grpc_code, "message": text}),
        }
    }

    /// Seconds after which the same request can succeed, when waiting is what helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::Domain(
                DomainError::SendThrottled { retry_after_secs }
                | DomainError::SendLimited {
                    retry_after_secs, ..
                },
            ) => Some((*retry_after_secs).max(1)),
            ApiError::Unavailable => Some(1),
            _ => None,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.entry().http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_response(&self) -> Response {
        self.to_response_in(Language::ENGLISH)
    }

    pub fn to_response_in(&self, language: Language) -> Response {
        let mut resp = Response::builder()
            .status(self.http_status())
            .content_type("application/json")
            .body(self.body_in(language).to_string());
        if self.entry().grpc_code == 16 {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// Map any error poem raises (its own rejections included) onto the catalog.
    pub fn from_poem(err: &poem::Error) -> ApiError {
        if let Some(api) = err.downcast_ref::<ApiError>() {
            return api.clone();
        }
        if let Some(localized) = err.downcast_ref::<Localized>() {
            return localized.error.clone();
        }
        match err.status() {
            StatusCode::NOT_FOUND => ApiError::RouteNotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            s if s.is_client_error() => ApiError::Validation("invalid request".to_owned()),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable,
            _ => ApiError::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.http_status()
    }

    fn as_response(&self) -> Response {
        self.to_response()
    }
}

/// An error of a request whose language is known (the caller is authenticated): answered in
/// that language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Localized {
    pub error: ApiError,
    pub language: Language,
}

impl Localized {
    /// Any error poem raises, with its language (English when none was attached).
    pub fn from_poem(err: &poem::Error) -> Localized {
        match err.downcast_ref::<Localized>() {
            Some(localized) => localized.clone(),
            None => Localized {
                error: ApiError::from_poem(err),
                language: Language::ENGLISH,
            },
        }
    }

    pub fn to_response(&self) -> Response {
        self.error.to_response_in(self.language)
    }
}

impl ResponseError for Localized {
    fn status(&self) -> StatusCode {
        self.error.http_status()
    }

    fn as_response(&self) -> Response {
        self.to_response()
    }
}

/// Storage faults: the cause is logged here, once, with its chain; the client gets the
/// catalog's text only.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %crate::error_chain(&e), "storage failure");
        match e {
            e if e.is_transient() => ApiError::Unavailable,
            StoreError::Conflict(_) => ApiError::Aborted,
            _ => ApiError::Internal,
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Rejected(d) => ApiError::Domain(d),
            AppError::Store(s) => s.into(),
            AppError::WriterGone => {
                tracing::error!("the write path did not answer");
                ApiError::Unavailable
            }
            AppError::BatchFailed { transient: true } => ApiError::Unavailable,
            AppError::BatchFailed { transient: false } | AppError::Panicked => ApiError::Internal,
            AppError::TwilioVerify(e) => {
                tracing::error!(error = %e, "Twilio Verify gave no answer about the code");
                match e {
                    CheckError::Unavailable(_) => ApiError::Unavailable,
                    CheckError::Refused(_) => ApiError::Internal,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<ApiError> {
        use DomainError::*;
        let mut all = vec![
            ApiError::AuthHeaderMissing,
            ApiError::AuthHeaderInvalid,
            ApiError::TokenInvalid,
            ApiError::Validation(
                "invalid SetMyPhoneRequest.Phone: value does not have prefix \"+\"".into(),
            ),
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::UnsupportedEncoding,
            ApiError::Aborted,
            ApiError::Unavailable,
            ApiError::Internal,
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
        ];
        for d in [
            PhoneInvalid,
            PhoneNotChanged,
            CodeNotFound,
            CodeInvalid,
            ResendPhoneNotFound,
            PhoneAlreadyVerified,
            RemovePhoneNotFound,
            TooManyAttempts,
            SendThrottled {
                retry_after_secs: 3,
            },
        ] {
            all.push(ApiError::Domain(d));
        }
        all
    }

    #[test]
    fn only_rows_with_a_key_change_with_the_language() {
        let german = Language::from_code("de").unwrap();
        for err in every_error() {
            let english = err.body();
            assert_eq!(err.body_in(Language::ENGLISH), english, "{err:?}");
            match err.entry().key {
                None => {
                    for language in Language::all() {
                        assert_eq!(err.body_in(language), english, "{err:?} in {language}");
                    }
                }
                Some(_) => assert_ne!(err.body_in(german), english, "{err:?}"),
            }
        }
        let body = ApiError::Domain(DomainError::PhoneNotChanged).body_in(german);
        assert_eq!(
            body["message"],
            "Telefonnummer wurde nicht geändert (COMMAND-wF94r)"
        );
        assert_eq!(
            body["details"][0]["message"],
            "Telefonnummer wurde nicht geändert"
        );
    }

    #[test]
    fn zitadels_untranslated_messages_have_no_key() {
        for err in [
            ApiError::AuthHeaderMissing,
            ApiError::AuthHeaderInvalid,
            ApiError::TokenInvalid,
            ApiError::Validation("x".into()),
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
        ] {
            assert_eq!(err.entry().key, None, "{err:?}");
        }
    }
}
