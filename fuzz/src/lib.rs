//! Shared pieces of the phoneproof fuzz targets: the structured inputs (derived with
//! `arbitrary`), the oracles every target applies to what the service answers, the panic
//! policy, and the seed corpus (written by the targets themselves, see `write_seeds`).
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

// ---------------------------------------------------------------------------------------
// Seed corpus
// ---------------------------------------------------------------------------------------

/// The four bytes that make a derived enum pick variant `index` of `count`
/// (`arbitrary` takes a little-endian u32 `x` and picks `(x * count) >> 32`).
pub fn variant(index: u32, count: u32) -> [u8; 4] {
    let x = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
    x.to_le_bytes()
}

/// Decodes `bytes` as the fuzzer does, to check that a seed means what it was written for.
pub fn decode<T: for<'a> Arbitrary<'a>>(bytes: &[u8]) -> T {
    T::arbitrary_take_rest(Unstructured::new(bytes)).expect("seed decodes")
}

const JWT_EXAMPLE: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9.eyJhdWQiOiJwaG9uZXByb29mIiwiZXhwIjoxNzk1MzU1ODc2LCJpYXQiOjE3OTUzMTI2NzYsImlzcyI6InBob25lcHJvb2YtbG9jYWwiLCJuYmYiOjE3OTUzMTI2NzYsInN1YiI6ImV4cGxvcmUtYSIsInVybjp6aXRhZGVsOmlhbTp1c2VyOnJlc291cmNlb3duZXI6aWQiOiI2OTYyOTAyMzkwNjQ4ODMzNCJ9.ijC9TJlyMks3ILwwn1TzpCt1qR3bG4qGTxD9RRwHHuHE-R26dzKrNJtnq5Bpp6dc5rXX7h5CjRB0M8P__W9KAQ";
/// Claims the default local verifier accepts (until 2100).
pub const CLAIMS_EXAMPLE: &str = r#"{"iss":"phoneproof-local","aud":"phoneproof","sub":"69629023906488330","urn:zitadel:iam:user:resourceowner:id":"69629023906488334","iat":1718260000,"nbf":1718260000,"exp":4102444800}"#;

/// Bytes that `arbitrary` decodes back into these inputs. Only inputs whose variable-length
/// data sits in the last field are encodable (a `Custom`/`Raw` string in a middle field is
/// length-prefixed from the end of the data, which seeds do not need).
pub trait Encode {
    fn encode(&self) -> Vec<u8>;
}

impl ContentTypeChoice {
    fn index(&self) -> u32 {
        match self {
            ContentTypeChoice::None => 0,
            ContentTypeChoice::Json => 1,
            ContentTypeChoice::JsonCharset => 2,
            ContentTypeChoice::TextPlain => 3,
            ContentTypeChoice::FormUrlencoded => 4,
            ContentTypeChoice::GrpcWeb => 5,
            ContentTypeChoice::Custom(_) => panic!("seeds use no custom content type"),
        }
    }
}

impl Encode for BodyInput {
    fn encode(&self) -> Vec<u8> {
        let mut b = variant(self.op as u32, 3).to_vec();
        b.extend(variant(self.content_type.index(), 7));
        b.extend(&self.body.0);
        b
    }
}

impl Encode for JwtInput {
    fn encode(&self) -> Vec<u8> {
        let (i, payload) = match self {
            JwtInput::Header(p) => (0, p),
            JwtInput::HeaderJson(p) => (1, p),
            JwtInput::SignedClaims(p) => (2, p),
        };
        let mut b = variant(i, 3).to_vec();
        b.extend(&payload.0);
        b
    }
}

impl Encode for RouterInput {
    fn encode(&self) -> Vec<u8> {
        let method = match &self.method {
            MethodChoice::Get => 0,
            MethodChoice::Put => 1,
            MethodChoice::Post => 2,
            MethodChoice::Delete => 3,
            MethodChoice::Head => 4,
            MethodChoice::Options => 5,
            MethodChoice::Patch => 6,
            MethodChoice::Trace => 7,
            MethodChoice::Connect => 8,
            MethodChoice::Custom(_) => panic!("seeds use no custom method"),
        };
        let path = match &self.path {
            PathChoice::Phone => 0,
            PathChoice::Verify => 1,
            PathChoice::Resend => 2,
            PathChoice::Healthz => 3,
            PathChoice::Readyz => 4,
            PathChoice::OpenApi => 5,
            PathChoice::Metrics => 6,
            PathChoice::SwaggerUi => 7,
            PathChoice::PhonePlus(_) | PathChoice::Raw(_) => panic!("seeds use no custom path"),
        };
        let auth = match &self.auth {
            AuthChoice::None => 0,
            AuthChoice::Valid => 1,
            AuthChoice::ValidLoose => 2,
            AuthChoice::Raw(_) => panic!("seeds use no raw auth header"),
        };
        let (body, payload): (u32, &[u8]) = match &self.body {
            BodyChoice::Empty => (0, b""),
            BodyChoice::EmptyObject => (1, b""),
            BodyChoice::Phone(s) => (2, s.as_bytes()),
            BodyChoice::Code(s) => (3, s.as_bytes()),
            BodyChoice::Raw(b) => (4, &b.0),
        };
        let mut b = Vec::new();
        b.extend(variant(method, 10));
        b.extend(variant(path, 10));
        b.extend(variant(auth, 4));
        b.extend(variant(self.content_type.index(), 7));
        b.extend(variant(body, 5));
        b.extend(payload);
        b
    }
}

fn encoded<T>(input: T) -> Vec<u8>
where
    T: Encode + for<'a> Arbitrary<'a> + PartialEq + std::fmt::Debug,
{
    let bytes = input.encode();
    let back: T = T::arbitrary_take_rest(Unstructured::new(&bytes)).expect("seed decodes");
    assert_eq!(
        back, input,
        "a seed does not decode to the input it was written for"
    );
    bytes
}

/// Seeds of one target: (file name without the `seed-` prefix, bytes), built from the
/// contract's examples.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| out.push((name.to_owned(), bytes));
    match target {
        "phone_parse" => {
            for (name, raw) in [
                ("ch-spaces", "+41 71 000 00 00"),
                ("ch-e164", "+41710000000"),
                ("us-parens", "+1 (415) 555-2671"),
                ("ch-national", "071 000 00 00"),
                ("de-dashes", "+49-30-1234-5678"),
                ("plus-only", "+"),
                ("letters", "+41 ABC"),
                ("ext", "+41 71 000 00 00 ext. 12"),
                ("intl-800", "+800 1234 5678"),
                ("tel-uri", "tel:+41-71-000-00-00;phone-context=ch"),
            ] {
                add(name, raw.as_bytes().to_vec());
            }
        }
        "request_body" => {
            use BodyOp::*;
            use ContentTypeChoice as Ct;
            let cases: &[(&str, BodyOp, ContentTypeChoice, &str)] = &[
                (
                    "set-ch",
                    SetPhone,
                    Ct::Json,
                    r#"{"phone":"+41 71 000 00 00"}"#,
                ),
                (
                    "set-us",
                    SetPhone,
                    Ct::JsonCharset,
                    r#"{"phone":"+1 (415) 555-2671","x":1}"#,
                ),
                (
                    "set-noplus",
                    SetPhone,
                    Ct::Json,
                    r#"{"phone":"071 000 00 00"}"#,
                ),
                ("set-number", SetPhone, Ct::Json, r#"{"phone":41710000000}"#),
                (
                    "set-text-plain",
                    SetPhone,
                    Ct::TextPlain,
                    r#"{"phone":"+41 71 000 00 00"}"#,
                ),
                ("set-empty", SetPhone, Ct::None, ""),
                ("verify-code", VerifyCode, Ct::Json, r#"{"code":"ABC123"}"#),
                ("verify-int", VerifyCode, Ct::Json, r#"{"code":987654}"#),
                ("verify-trunc", VerifyCode, Ct::Json, r#"{"code":"SECRET12"#),
                (
                    "verify-array",
                    VerifyCode,
                    Ct::Json,
                    r#"[{"code":"ABC123"}]"#,
                ),
                (
                    "verify-dup",
                    VerifyCode,
                    Ct::Json,
                    r#"{"code":"SECRET12","code":"X"}"#,
                ),
                ("verify-empty", VerifyCode, Ct::None, ""),
                ("resend-empty-object", Resend, Ct::Json, "{}"),
                (
                    "resend-unknown",
                    Resend,
                    Ct::Json,
                    r#"{"anything":[1,2,{"a":null}]}"#,
                ),
                ("resend-empty", Resend, Ct::None, ""),
            ];
            for (name, op, ct, body) in cases {
                let input = BodyInput {
                    op: *op,
                    content_type: ct.clone(),
                    body: Bytes(body.as_bytes().to_vec()),
                };
                add(name, encoded(input));
            }
        }
        "bearer_jwt" => {
            let cases: Vec<(&str, JwtInput)> = vec![
                ("bearer-xyz", JwtInput::Header(Bytes(b"Bearer x.y.z".to_vec()))),
                ("bearer-jwt", JwtInput::Header(Bytes(format!("Bearer {JWT_EXAMPLE}").into_bytes()))),
                (
                    "lower-bearer-jwt",
                    JwtInput::Header(Bytes(format!("bearer  {JWT_EXAMPLE} ").into_bytes())),
                ),
                ("basic", JwtInput::Header(Bytes(b"Basic dXNlcjpwYXNz".to_vec()))),
                ("bearer-only", JwtInput::Header(Bytes(b"Bearer".to_vec()))),
                (
                    "header-eddsa",
                    JwtInput::HeaderJson(Bytes(br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#.to_vec())),
                ),
                ("header-none", JwtInput::HeaderJson(Bytes(br#"{"alg":"none"}"#.to_vec()))),
                ("signed-valid", JwtInput::SignedClaims(Bytes(CLAIMS_EXAMPLE.as_bytes().to_vec()))),
                (
                    "signed-odd-nbf",
                    JwtInput::SignedClaims(Bytes(
                        br#"{"iss":"phoneproof-local","aud":["phoneproof"],"sub":"u","urn:zitadel:iam:user:resourceowner:id":"1","exp":4102444800,"nbf":1e300}"#.to_vec(),
                    )),
                ),
            ];
            for (name, input) in cases {
                add(name, encoded(input));
            }
        }
        "router" => {
            use AuthChoice as A;
            use BodyChoice as B;
            use ContentTypeChoice as Ct;
            use MethodChoice as M;
            use PathChoice as P;
            let cases: Vec<(&str, M, P, A, Ct, B)> = vec![
                ("get-phone", M::Get, P::Phone, A::Valid, Ct::None, B::Empty),
                (
                    "get-phone-no-auth",
                    M::Get,
                    P::Phone,
                    A::None,
                    Ct::None,
                    B::Empty,
                ),
                (
                    "set-phone",
                    M::Put,
                    P::Phone,
                    A::Valid,
                    Ct::Json,
                    B::Phone("+41 71 000 00 00".into()),
                ),
                (
                    "set-phone-loose-auth",
                    M::Put,
                    P::Phone,
                    A::ValidLoose,
                    Ct::JsonCharset,
                    B::Phone("+1 (415) 555-2671".into()),
                ),
                (
                    "verify",
                    M::Post,
                    P::Verify,
                    A::Valid,
                    Ct::Json,
                    B::Code("ABC123".into()),
                ),
                (
                    "resend",
                    M::Post,
                    P::Resend,
                    A::Valid,
                    Ct::None,
                    B::EmptyObject,
                ),
                ("remove", M::Delete, P::Phone, A::Valid, Ct::None, B::Empty),
                (
                    "put-raw-body",
                    M::Put,
                    P::Phone,
                    A::Valid,
                    Ct::Json,
                    B::Raw(Bytes(br#"{"phone":"+41 71 000 00 00"#.to_vec())),
                ),
                (
                    "patch-phone",
                    M::Patch,
                    P::Phone,
                    A::Valid,
                    Ct::None,
                    B::Empty,
                ),
                (
                    "head-phone",
                    M::Head,
                    P::Phone,
                    A::Valid,
                    Ct::None,
                    B::Empty,
                ),
                ("healthz", M::Get, P::Healthz, A::None, Ct::None, B::Empty),
                ("openapi", M::Get, P::OpenApi, A::None, Ct::None, B::Empty),
            ];
            for (name, method, path, auth, content_type, body) in cases {
                let input = RouterInput {
                    method,
                    path,
                    auth,
                    content_type,
                    body,
                };
                add(name, encoded(input));
            }
        }
        other => panic!("no seeds for target {other}"),
    }
    out
}

/// When `PHONEPROOF_FUZZ_WRITE_SEEDS` names a directory, writes this target's seeds there
/// as `seed-*` files and exits. Each typed seed is checked to decode to the input it was
/// written for. Run as `PHONEPROOF_FUZZ_WRITE_SEEDS=fuzz/corpus/<t> cargo +nightly fuzz run <t>`.
pub fn write_seeds_if_asked(target: &str) {
    let Some(dir) = std::env::var_os("PHONEPROOF_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("seed directory");
    for (name, bytes) in seeds(target) {
        std::fs::write(dir.join(format!("seed-{name}")), &bytes).expect("write seed");
    }
    eprintln!("wrote the seeds of {target} to {}", dir.display());
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_bytes_pick_the_variant() {
        for count in 1..20u32 {
            for index in 0..count {
                let x = u32::from_le_bytes(variant(index, count));
                assert_eq!(((u64::from(x) * u64::from(count)) >> 32) as u32, index);
            }
        }
    }

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
    fn every_seed_decodes_to_its_input() {
        for t in ["phone_parse", "request_body", "bearer_jwt", "router"] {
            assert!(!seeds(t).is_empty());
        }
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
