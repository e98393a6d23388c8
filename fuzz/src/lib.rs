//! Shared pieces of the phoneproof fuzz targets: the structured inputs (derived with
//! `arbitrary`), the oracles every target applies to what the service answers, and the
//! panic policy. The seed corpus is committed under `corpus/<target>/seed-*`.
//!
//! The targets call the same library functions the server calls:
//! - `phone_parse`: `domain::PhoneNumber::parse`, `domain::validate_phone_field`
//! - `request_body`: `routes::body::{decode_set_phone, decode_verify_code, decode_resend}`
//! - `bearer_jwt`: `auth::bearer_token`, `auth::TokenVerifier::verify`
//! - `router`: the whole HTTP application, `startup::Application::endpoint`
use std::sync::atomic::{AtomicUsize, Ordering};

pub use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use phoneproof::error::ApiError;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Panic policy
// ---------------------------------------------------------------------------------------

static TOLERATED_PANICS: AtomicUsize = AtomicUsize::new(0);

/// libfuzzer-sys aborts on every panic, even one the service catches on purpose.
/// `PhoneNumber::parse` wraps `phonenumber::parse` in `catch_unwind` (the crate is known to
/// panic on some inputs), so a panic raised inside the `phonenumber` crate is let through to
/// that `catch_unwind`; if nothing catches it, libfuzzer-sys' own `catch_unwind` around the
/// target still aborts, so an uncaught one is still a crash. Every other panic aborts at once.
/// `PHONEPROOF_FUZZ_STRICT_PANICS=1` turns the exception off (every panic is a crash).
pub fn install_panic_policy() {
    if std::env::var_os("PHONEPROOF_FUZZ_STRICT_PANICS").is_some_and(|v| v == "1") {
        return;
    }
    let abort_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_phonenumber = info
            .location()
            .is_some_and(|l| l.file().contains("/phonenumber-"));
        if in_phonenumber {
            let n = TOLERATED_PANICS.fetch_add(1, Ordering::Relaxed);
            if n < 3 {
                eprintln!(
                    "phoneproof-fuzz: panic inside the phonenumber crate, left to the service's catch_unwind ({n}): {info}"
                );
            }
            return;
        }
        abort_hook(info);
    }));
}

// ---------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------

/// A google.rpc.Status body: integer `code`, string `message`, and when `details` is there,
/// an array of objects that each carry `@type`.
pub fn assert_status_shape(body: &Value, context: &dyn std::fmt::Debug) {
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not a JSON object: {body} ({context:?})"));
    assert!(
        obj.get("code").is_some_and(Value::is_i64),
        "error body has no integer `code`: {body} ({context:?})"
    );
    assert!(
        obj.get("message").is_some_and(Value::is_string),
        "error body has no string `message`: {body} ({context:?})"
    );
    if let Some(details) = obj.get("details") {
        let items = details
            .as_array()
            .unwrap_or_else(|| panic!("`details` is not an array: {body} ({context:?})"));
        for d in items {
            assert!(
                d.as_object().is_some_and(|o| o.contains_key("@type")),
                "a detail is not an object with `@type`: {body} ({context:?})"
            );
        }
    }
}

/// The texts an error body may carry: `message`, and each detail's `message` and `id`.
pub fn error_texts(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = body.get("message").and_then(Value::as_str) {
        out.push(m.to_owned());
    }
    if let Some(details) = body.get("details").and_then(Value::as_array) {
        for d in details {
            for key in ["message", "id"] {
                if let Some(s) = d.get(key).and_then(Value::as_str) {
                    out.push(s.to_owned());
                }
            }
        }
    }
    out
}

/// A body-decoding message without its trailing ` at line L column C`.
pub fn strip_position(message: &str) -> &str {
    if let Some(i) = message.rfind(" at line ") {
        let tail = &message[i + " at line ".len()..];
        if let Some((line, col)) = tail.split_once(" column ")
            && !line.is_empty()
            && line.bytes().all(|b| b.is_ascii_digit())
            && !col.is_empty()
            && col.bytes().all(|b| b.is_ascii_digit())
        {
            return &message[..i];
        }
    }
    message
}

/// The values a request body gives its `code` field: from the parsed JSON when it parses,
/// and from a plain scan of the bytes (`"code" : "..."`) for bodies that do not.
pub fn code_candidates(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(code) = v.get("code")
    {
        match code {
            Value::String(s) => out.push(s.clone()),
            Value::Null => {}
            other => out.push(other.to_string()),
        }
    }
    let text = String::from_utf8_lossy(body);
    let mut rest: &str = &text;
    while let Some(i) = rest.find("\"code\"") {
        rest = &rest[i + 6..];
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix(':') else {
            continue;
        };
        let after = after.trim_start();
        if let Some(s) = after.strip_prefix('"') {
            let end = s.find('"').unwrap_or(s.len());
            out.push(s[..end].to_owned());
        } else {
            let end = after
                .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
                .unwrap_or(after.len());
            out.push(after[..end].to_owned());
        }
    }
    out
}

/// The errors decoding a request body may answer, and nothing else.
pub fn assert_decode_error(err: &ApiError, context: &dyn std::fmt::Debug) {
    use phoneproof::domain::DomainError;
    assert!(
        matches!(
            err,
            ApiError::Validation(_)
                | ApiError::UnsupportedMediaType
                | ApiError::Domain(DomainError::PhoneInvalid)
        ),
        "decoding a body answered {err:?} ({context:?})"
    );
    let status = err.http_status().as_u16();
    assert!(
        status == 400 || status == 415,
        "decoding a body answered HTTP {status} ({context:?})"
    );
}

/// An E.164 value as `PhoneNumber` keeps it: `+` then ASCII digits, at least one.
pub fn assert_e164(value: &str, context: &dyn std::fmt::Debug) {
    let digits = value
        .strip_prefix('+')
        .unwrap_or_else(|| panic!("parsed phone {value:?} does not start with '+' ({context:?})"));
    assert!(
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        "parsed phone {value:?} is not '+' and ASCII digits ({context:?})"
    );
}

// ---------------------------------------------------------------------------------------
// Structured inputs
// ---------------------------------------------------------------------------------------

/// Raw bytes. Unlike `Vec<u8>` (whose `arbitrary` spends a "one more?" byte per element),
/// these take the input as it is when last, and a length-prefixed slice elsewhere, so a
/// seed's body is the file's tail unchanged. Debug shows them as an escaped byte string.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Bytes {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        <&[u8]>::arbitrary(u).map(|b| Bytes(b.to_vec()))
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> arbitrary::Result<Self> {
        <&[u8]>::arbitrary_take_rest(u).map(|b| Bytes(b.to_vec()))
    }

    fn size_hint(depth: usize) -> (usize, Option<usize>) {
        <&[u8]>::size_hint(depth)
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Self {
        Bytes(b.to_vec())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A `Content-Type` header, or none.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum ContentTypeChoice {
    None,
    Json,
    JsonCharset,
    TextPlain,
    FormUrlencoded,
    GrpcWeb,
    Custom(String),
}

impl ContentTypeChoice {
    pub fn as_str(&self) -> Option<&str> {
        Some(match self {
            ContentTypeChoice::None => return None,
            ContentTypeChoice::Json => "application/json",
            ContentTypeChoice::JsonCharset => "application/json; charset=utf-8",
            ContentTypeChoice::TextPlain => "text/plain",
            ContentTypeChoice::FormUrlencoded => "application/x-www-form-urlencoded",
            ContentTypeChoice::GrpcWeb => "application/grpc-web+proto",
            ContentTypeChoice::Custom(s) => s,
        })
    }
}

/// Which request body decoder to call.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOp {
    SetPhone,
    VerifyCode,
    Resend,
}

/// Input of `request_body`.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct BodyInput {
    pub op: BodyOp,
    pub content_type: ContentTypeChoice,
    pub body: Bytes,
}

/// Input of `bearer_jwt`.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum JwtInput {
    /// The raw `Authorization` header value; its token (if any) and the whole value, lossily
    /// decoded, go to `verify`.
    Header(Bytes),
    /// `base64url(header JSON).e30.<junk signature>`: reaches the JWT header parser.
    HeaderJson(Bytes),
    /// `{"alg":"EdDSA","typ":"JWT"}` and these claim bytes, signed with the verifier's own
    /// key: reaches claim validation, which a bad signature never does.
    SignedClaims(Bytes),
}

#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum MethodChoice {
    Get,
    Put,
    Post,
    Delete,
    Head,
    Options,
    Patch,
    Trace,
    Connect,
    Custom(String),
}

impl MethodChoice {
    pub fn method(&self) -> Option<poem::http::Method> {
        use poem::http::Method;
        Some(match self {
            MethodChoice::Get => Method::GET,
            MethodChoice::Put => Method::PUT,
            MethodChoice::Post => Method::POST,
            MethodChoice::Delete => Method::DELETE,
            MethodChoice::Head => Method::HEAD,
            MethodChoice::Options => Method::OPTIONS,
            MethodChoice::Patch => Method::PATCH,
            MethodChoice::Trace => Method::TRACE,
            MethodChoice::Connect => Method::CONNECT,
            MethodChoice::Custom(s) => return Method::from_bytes(s.as_bytes()).ok(),
        })
    }
}

pub const PHONE_PATH: &str = "/auth/v1/users/me/phone";
pub const VERIFY_PATH: &str = "/auth/v1/users/me/phone/_verify";
pub const RESEND_PATH: &str = "/auth/v1/users/me/phone/_resend_verification";

#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum PathChoice {
    Phone,
    Verify,
    Resend,
    Healthz,
    Readyz,
    OpenApi,
    Metrics,
    SwaggerUi,
    /// The phone path followed by these characters (a suffix, a query, a slash...).
    PhonePlus(String),
    Raw(String),
}

impl PathChoice {
    pub fn path(&self) -> String {
        match self {
            PathChoice::Phone => PHONE_PATH.into(),
            PathChoice::Verify => VERIFY_PATH.into(),
            PathChoice::Resend => RESEND_PATH.into(),
            PathChoice::Healthz => "/healthz".into(),
            PathChoice::Readyz => "/readyz".into(),
            PathChoice::OpenApi => "/openapi.json".into(),
            PathChoice::Metrics => "/metrics".into(),
            PathChoice::SwaggerUi => "/swagger-ui/".into(),
            PathChoice::PhonePlus(s) => format!("{PHONE_PATH}{s}"),
            PathChoice::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum AuthChoice {
    None,
    /// `Bearer <a valid token>`.
    Valid,
    /// `bearer   <a valid token>  ` (scheme case and spaces).
    ValidLoose,
    Raw(Bytes),
}

#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum BodyChoice {
    Empty,
    EmptyObject,
    /// `{"phone": <this string>}`
    Phone(String),
    /// `{"code": <this string>}`
    Code(String),
    Raw(Bytes),
}

impl BodyChoice {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            BodyChoice::Empty => Vec::new(),
            BodyChoice::EmptyObject => b"{}".to_vec(),
            BodyChoice::Phone(p) => serde_json::json!({ "phone": p }).to_string().into_bytes(),
            BodyChoice::Code(c) => serde_json::json!({ "code": c }).to_string().into_bytes(),
            BodyChoice::Raw(b) => b.0.clone(),
        }
    }
}

/// Input of `router`.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct RouterInput {
    pub method: MethodChoice,
    pub path: PathChoice,
    pub auth: AuthChoice,
    pub content_type: ContentTypeChoice,
    pub body: BodyChoice,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_values_are_found_in_broken_bodies_too() {
        assert_eq!(
            code_candidates(br#"{"code":"ABC123"}"#),
            ["ABC123", "ABC123"]
        );
        assert_eq!(code_candidates(br#"{"code" : "SECRET12"#), ["SECRET12"]);
        assert_eq!(
            code_candidates(br#"{"code":987654,"x":1}"#),
            ["987654", "987654"]
        );
    }

    #[test]
    fn positions_are_stripped() {
        assert_eq!(
            strip_position("malformed JSON at line 1 column 12"),
            "malformed JSON"
        );
        assert_eq!(strip_position("no position"), "no position");
    }
}
