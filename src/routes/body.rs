//! Request bodies: content type, size and JSON decoding into the contract's request shapes,
//! then into domain types. The fuzz targets call these same functions.
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::domain::{PhoneNumber, VerificationCode, validate_phone_field};
use crate::error::ApiError;

/// Body of Set My Phone.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = v1SetMyPhoneRequest)]
pub struct SetMyPhoneRequest {
    /// The phone number in international form, starting with `+` (spaces, dashes and
    /// parentheses are accepted); stored and returned as E.164. It must be a number that
    /// can exist (libphonenumber), of a type and region the server sends codes to.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 50, pattern = r"^\+", example = "+41 71 000 00 00", required = true)]
    pub phone: Option<String>,
}

/// Body of Verify Phone.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = v1VerifyMyPhoneRequest)]
pub struct VerifyMyPhoneRequest {
    /// The code sent to the phone by SMS.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 200, example = "SLUSZN", required = true)]
    pub code: Option<String>,
}

/// Body of Resend Phone verification: an empty object, or no body at all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = v1ResendMyPhoneVerificationRequest)]
pub struct ResendMyPhoneVerificationRequest {}

/// Accepts `application/json` (with parameters) or no content type; an empty body is `{}`.
pub fn decode_json<T: DeserializeOwned + Default>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, ApiError> {
    let blank = body.iter().all(|b| is_json_whitespace(*b));
    if let Some(ct) = content_type {
        let essence = ct.split(';').next().unwrap_or("").trim();
        // An empty body needs no content type; a body must be JSON.
        if !blank && !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let Some(first) = body.iter().find(|b| !is_json_whitespace(**b)) else {
        return Ok(T::default());
    };
    // serde would also read a struct from a JSON array; the contract's bodies are objects.
    if *first != b'{' {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => ApiError::Validation(format!(
                    "invalid request body: {WRONG_TYPE} at line 1 column 1"
                )),
                Err(e) => describe(&e),
            },
        );
    }
    serde_json::from_slice(body).map_err(|e| describe(&e))
}

/// JSON's four whitespace bytes (RFC 8259); Rust's ASCII whitespace also counts form feed,
/// which JSON (and ZITADEL's Go decoder) rejects.
fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

const WRONG_TYPE: &str = "a field has the wrong JSON type (expected an object with string fields)";

/// Where and how the JSON is wrong, without echoing any of its values.
fn describe(e: &serde_json::Error) -> ApiError {
    let what = match e.classify() {
        serde_json::error::Category::Data => WRONG_TYPE,
        serde_json::error::Category::Eof => "the JSON ends too early",
        _ => "malformed JSON",
    };
    ApiError::Validation(format!(
        "invalid request body: {what} at line {} column {}",
        e.line(),
        e.column()
    ))
}

/// Set My Phone's body to a phone number, with the contract's checks in order.
pub fn decode_set_phone(content_type: Option<&str>, body: &[u8]) -> Result<PhoneNumber, ApiError> {
    let req: SetMyPhoneRequest = decode_json(content_type, body)?;
    let raw = req.phone.unwrap_or_default();
    validate_phone_field(&raw).map_err(|m| ApiError::Validation(m.to_owned()))?;
    Ok(PhoneNumber::parse(&raw)?)
}

/// Verify Phone's body to a code.
pub fn decode_verify_code(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<VerificationCode, ApiError> {
    let req: VerifyMyPhoneRequest = decode_json(content_type, body)?;
    VerificationCode::parse(&req.code.unwrap_or_default())
        .map_err(|m| ApiError::Validation(m.to_owned()))
}

/// Resend's body: anything that is a JSON object (or nothing).
pub fn decode_resend(content_type: Option<&str>, body: &[u8]) -> Result<(), ApiError> {
    decode_json::<ResendMyPhoneVerificationRequest>(content_type, body).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_are_not_what_we_take() {
        let ct = Some("application/json");
        let cases: &[(Option<&str>, &[u8], &str)] = &[
            (ct, b"{", "the JSON ends too early"),
            (ct, b"{\"phone\": 5}", "wrong JSON type"),
            (ct, b"[]", "wrong JSON type"),
            (ct, b"not json", "malformed JSON"),
            // Form feed is not JSON whitespace: this is not an empty body.
            (ct, b"\x0c", "malformed JSON"),
            (ct, b" \x0c{}", "malformed JSON"),
        ];
        for (ct, body, want) in cases {
            match decode_set_phone(*ct, body) {
                Err(ApiError::Validation(m)) => assert!(m.contains(want), "{body:?}: {m}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
        assert_eq!(
            decode_set_phone(Some("text/plain"), b"{}"),
            Err(ApiError::UnsupportedMediaType)
        );
        assert!(matches!(
            decode_resend(Some("application/json"), b"\x0c"),
            Err(ApiError::Validation(m)) if m.contains("malformed JSON")
        ));
        assert_eq!(decode_resend(Some("application/json"), b" \t\r\n"), Ok(()));
    }

    #[test]
    fn missing_null_and_unknown_fields() {
        let ct = Some("application/json; charset=utf-8");
        let length = crate::domain::validate_phone_field("").unwrap_err();
        assert_eq!(
            decode_set_phone(ct, b"{}"),
            Err(ApiError::Validation(length.into()))
        );
        assert_eq!(
            decode_set_phone(ct, b"{\"phone\":null}"),
            Err(ApiError::Validation(length.into()))
        );
        assert_eq!(
            decode_set_phone(None, b""),
            Err(ApiError::Validation(length.into()))
        );
        let p = decode_set_phone(ct, b"{\"phone\":\"+41 71 000 00 00\",\"x\":1}").unwrap();
        assert_eq!(p.as_ref(), "+41710000000");
    }

    #[test]
    fn a_code_never_appears_in_a_decoding_error() {
        let err = decode_verify_code(Some("application/json"), b"{\"code\": 987654}").unwrap_err();
        assert!(!err.body().to_string().contains("987654"));
    }
}
