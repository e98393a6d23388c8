//! The OpenAPI document, generated from the handlers' annotations. Error responses are added
//! from the error catalog in `error.rs`, so what is documented is what the code answers.
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Doc, Ref, Required, ResponseBuilder,
    example::ExampleBuilder,
    schema::{ObjectBuilder, Type},
};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::domain::{
    CODE_LENGTH_MESSAGE, DomainError, PHONE_LENGTH_MESSAGE, PHONE_PREFIX_MESSAGE, Rule,
};
use crate::error::ApiError;
use crate::routes::phone;

/// google.rpc.Status: the body of every answer other than 200.
#[derive(Serialize, ToSchema)]
#[schema(as = rpcStatus)]
pub struct RpcStatus {
    /// The gRPC status code (3 INVALID_ARGUMENT, 5 NOT_FOUND, 8 RESOURCE_EXHAUSTED, 9 FAILED_PRECONDITION, 16 UNAUTHENTICATED, ...).
    #[schema(format = Int32, example = 9)]
    pub code: i32,
    /// The error text followed by its id in parentheses.
    #[schema(example = "Phone not changed (COMMAND-wF94r)")]
    pub message: String,
    /// One `zitadel.v1.ErrorDetail` repeating id and text; absent for request validation errors.
    #[schema(value_type = Vec<ProtobufAny>, required = false)]
    pub details: Option<Vec<ProtobufAny>>,
}

/// A typed detail; phoneproof sends `type.googleapis.com/zitadel.v1.ErrorDetail`.
#[derive(Serialize, ToSchema)]
#[schema(as = protobufAny)]
pub struct ProtobufAny {
    /// The type of the detail.
    #[serde(rename = "@type")]
    #[schema(example = "type.googleapis.com/zitadel.v1.ErrorDetail")]
    pub type_url: String,
    /// The error id, such as `COMMAND-wF94r`.
    #[schema(value_type = String, required = false, example = "COMMAND-wF94r")]
    pub id: Option<String>,
    /// The error text.
    #[schema(value_type = String, required = false, example = "Phone not changed")]
    pub message: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "phoneproof",
        description = "Set a phone number for the authenticated user, send it a verification code by SMS, and verify it. Wire-compatible with ZITADEL's Auth API \"my phone\" endpoints.",
    ),
    paths(
        phone::get_my_phone,
        phone::set_my_phone,
        phone::verify_my_phone,
        phone::resend_my_phone_verification,
        phone::remove_my_phone,
    ),
    components(schemas(RpcStatus, ProtobufAny)),
    tags((name = "User Phone", description = "The authenticated user's phone number and its verification.")),
    modifiers(&SecurityAndErrors),
)]
pub struct ApiDoc;

struct SecurityAndErrors;

fn validation(msg: &str) -> ApiError {
    ApiError::Validation(msg.to_owned())
}

fn send_limit_examples() -> [(&'static str, ApiError); 2] {
    [
        (
            "PHONEPROOF-dest1",
            DomainError::SendLimited {
                rule: Rule::Destination,
                retry_after_secs: 1800,
            }
            .into(),
        ),
        (
            "PHONEPROOF-busy1",
            DomainError::SendLimited {
                rule: Rule::GlobalBreaker,
                retry_after_secs: 20,
            }
            .into(),
        ),
    ]
}

/// The errors each operation can answer, beyond 401/500/503 which all share.
fn operation_errors(operation_id: &str) -> Vec<(&'static str, ApiError)> {
    let malformed = validation("invalid request body: malformed JSON at line 1 column 2");
    let mut errors = match operation_id {
        "AuthService_SetMyPhone" => vec![
            ("length", validation(PHONE_LENGTH_MESSAGE)),
            ("prefix", validation(PHONE_PREFIX_MESSAGE)),
            ("malformed", malformed),
            ("PHONE-so0wa", DomainError::PhoneInvalid.into()),
            ("COMMAND-wF94r", DomainError::PhoneNotChanged.into()),
            (
                "PHONEPROOF-nosms",
                DomainError::NumberRefused(Rule::NumberType).into(),
            ),
            (
                "throttled",
                DomainError::SendThrottled {
                    retry_after_secs: 420,
                }
                .into(),
            ),
        ],
        "AuthService_VerifyMyPhone" => vec![
            ("length", validation(CODE_LENGTH_MESSAGE)),
            ("malformed", malformed),
            ("COMMAND-sM0cs", DomainError::CodeInvalid.into()),
            ("COMMAND-Rsj8c", DomainError::CodeNotFound.into()),
            ("attempts", DomainError::TooManyAttempts.into()),
        ],
        "AuthService_ResendMyPhoneVerification" => vec![
            ("malformed", malformed),
            ("COMMAND-2M9sf", DomainError::PhoneAlreadyVerified.into()),
            ("COMMAND-2b7Hf", DomainError::ResendPhoneNotFound.into()),
            (
                "PHONEPROOF-nosms",
                DomainError::NumberRefused(Rule::NumberType).into(),
            ),
            (
                "throttled",
                DomainError::SendThrottled {
                    retry_after_secs: 30,
                }
                .into(),
            ),
        ],
        "AuthService_RemoveMyPhone" => {
            vec![("COMMAND-p6rsc", DomainError::RemovePhoneNotFound.into())]
        }
        _ => vec![],
    };
    // The shared send limits refuse whatever would send a code.
    if matches!(
        operation_id,
        "AuthService_SetMyPhone" | "AuthService_ResendMyPhoneVerification"
    ) {
        errors.extend(send_limit_examples());
    }
    if operation_id != "AuthService_GetMyPhone" {
        errors.push(("aborted", ApiError::Aborted));
    }
    if matches!(
        operation_id,
        "AuthService_SetMyPhone"
            | "AuthService_VerifyMyPhone"
            | "AuthService_ResendMyPhoneVerification"
    ) {
        errors.push(("too-large", ApiError::PayloadTooLarge));
        errors.push(("content-type", ApiError::UnsupportedMediaType));
    }
    errors.extend([
        ("missing", ApiError::AuthHeaderMissing),
        ("not-bearer", ApiError::AuthHeaderInvalid),
        ("token", ApiError::TokenInvalid),
        ("internal", ApiError::Internal),
        ("unavailable", ApiError::Unavailable),
    ]);
    errors
}

/// What a client can do next after each operation succeeded (OpenAPI links; the user comes
/// from the token, so they carry no parameters).
fn next_operations(operation_id: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let get = (
        "GetMyPhone",
        "AuthService_GetMyPhone",
        "Read the phone and its state.",
    );
    let verify = (
        "VerifyMyPhone",
        "AuthService_VerifyMyPhone",
        "Verify with the code sent by SMS.",
    );
    let resend = (
        "ResendMyPhoneVerification",
        "AuthService_ResendMyPhoneVerification",
        "Send a new code.",
    );
    let remove = (
        "RemoveMyPhone",
        "AuthService_RemoveMyPhone",
        "Remove the phone.",
    );
    let set = (
        "SetMyPhone",
        "AuthService_SetMyPhone",
        "Set another number.",
    );
    match operation_id {
        "AuthService_SetMyPhone" => vec![verify, resend, get, remove],
        "AuthService_ResendMyPhoneVerification" => vec![verify, get],
        "AuthService_VerifyMyPhone" => vec![get, remove, set],
        "AuthService_RemoveMyPhone" => vec![get, set],
        "AuthService_GetMyPhone" => vec![set],
        _ => vec![],
    }
}

fn status_description(status: u16) -> &'static str {
    match status {
        400 => {
            "The request is invalid (INVALID_ARGUMENT, code 3) or the phone is not in a state that allows it (FAILED_PRECONDITION, code 9)."
        }
        401 => {
            "No valid bearer token (UNAUTHENTICATED, code 16). Carries `WWW-Authenticate: Bearer`."
        }
        404 => "There is nothing to act on (NOT_FOUND, code 5).",
        409 => "A concurrent request on the same phone won (ABORTED, code 10); retry.",
        413 => "The request body is larger than the server accepts (code 3).",
        415 => "The request body is not `application/json` (code 3).",
        429 => {
            "Too many attempts or codes (RESOURCE_EXHAUSTED, code 8); `Retry-After` says when waiting helps."
        }
        500 => "Internal error (INTERNAL, code 13); no internals are disclosed.",
        503 => {
            "Storage, or in Twilio Verify mode Twilio, is unavailable (UNAVAILABLE, code 14); retry after `Retry-After` seconds."
        }
        _ => "Error.",
    }
}

/// `Accept-Language`, which every operation reads.
fn accept_language() -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    ParameterBuilder::new()
        .name("Accept-Language")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "The language of error texts (`message` and the detail's `message`) and of the SMS a Set or Resend sends: bg, cs, de, en, es, fr, hu, id, it, ja, ko, mk, nl, pl, pt, ro, ru, sv, tr or zh. A language claim in the token (`locale` unless configured otherwise) comes first; then this header, by q-value, a regional variant counting as its base language (`de-CH` is `de`); otherwise, and for a malformed header, the configured default (`en` unless configured otherwise). Request validation messages and authentication errors are never translated.",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
        .example(Some(serde_json::json!("de-CH,fr;q=0.5")))
        .build()
}

impl Modify for SecurityAndErrors {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        bearer.description = Some(
            "An access token (JWT). Its `sub` is the user; the claim `urn:zitadel:iam:user:resourceowner:id` names the organisation.".into(),
        );
        components.add_security_scheme("BearerAuth", SecurityScheme::Http(bearer));

        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let id = op.operation_id.clone().unwrap_or_default();
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(utoipa::openapi::RefOr::T(accept_language()));
                if let Some(utoipa::openapi::RefOr::T(body)) = op.request_body.as_mut() {
                    // Resend may be sent without a body; the others need one.
                    body.required = Some(if id == "AuthService_ResendMyPhoneVerification" {
                        Required::False
                    } else {
                        Required::True
                    });
                }
                if let Some(utoipa::openapi::RefOr::T(ok)) = op.responses.responses.get_mut("200") {
                    for (name, target, what) in next_operations(&id) {
                        let link = utoipa::openapi::link::LinkBuilder::new()
                            .operation_id(target)
                            .description(what)
                            .build();
                        ok.links.insert(name.to_owned(), link.into());
                    }
                }
                let mut by_status: std::collections::BTreeMap<u16, Vec<(&str, ApiError)>> =
                    Default::default();
                for (name, err) in operation_errors(&id) {
                    by_status
                        .entry(err.entry().http_status)
                        .or_default()
                        .push((name, err));
                }
                for (status, errs) in by_status {
                    let examples = errs.iter().map(|(name, err)| {
                        let entry = err.entry();
                        let summary = entry
                            .id
                            .map(|i| format!("{i}: {}", entry.text))
                            .unwrap_or_else(|| {
                                err.body()["message"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned()
                            });
                        (
                            name.to_string(),
                            ExampleBuilder::new()
                                .summary(summary)
                                .value(Some(err.body()))
                                .build(),
                        )
                    });
                    let content = ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("rpcStatus")))
                        .examples_from_iter(examples)
                        .build();
                    let mut response = ResponseBuilder::new()
                        .description(status_description(status))
                        .content("application/json", content);
                    if status == 401 {
                        response = response.header(
                            "WWW-Authenticate",
                            HeaderBuilder::new()
                                .schema(Some(
                                    ObjectBuilder::new().schema_type(Type::String).build(),
                                ))
                                .description(Some("Always `Bearer`."))
                                .build(),
                        );
                    }
                    if status == 429 || status == 503 {
                        response = response.header(
                            "Retry-After",
                            HeaderBuilder::new()
                                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).build()))
                                .description(Some("Seconds after which the request can succeed; absent when only a new code helps."))
                                .build(),
                        );
                    }
                    op.responses
                        .responses
                        .insert(status.to_string(), response.build().into());
                }
            }
        }
    }
}

/// The document as served and committed: pretty JSON with a final newline.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes");
    text.push('\n');
    text
}
