//! The gRPC and gRPC-web surface: ZITADEL's `zitadel.auth.v1.AuthService` (its five "my phone"
//! methods), server reflection and the standard health service, served by tonic inside the
//! poem listener, on the same port as REST. Like the REST handlers, each method only
//! authenticates, decodes, calls the application service and maps the answer to its wire.
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::app::Change;
use crate::auth::{AuthenticatedUser, single_bearer_token};
use crate::client_addr::ClientAddr;
use crate::clock::Millis;
use crate::domain::{PhoneNumber, ResourceOwner, VerificationCode, validate_phone_field};
use crate::error::{ApiError, ERROR_DETAIL_TYPE, Localized};
use crate::i18n::Language;
use crate::state::AppState;

mod health;
mod web;

pub use web::{PATH_PREFIXES, endpoint, is_grpc_request};

/// The generated messages and services, one module per protobuf package.
pub mod pb {
    pub mod zitadel {
        pub mod v1 {
            tonic::include_proto!("zitadel.v1");
        }
        pub mod user {
            pub mod v1 {
                tonic::include_proto!("zitadel.user.v1");
            }
        }
        pub mod auth {
            pub mod v1 {
                tonic::include_proto!("zitadel.auth.v1");
            }
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
}

/// Every file of `proto/` with its imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

use pb::zitadel::auth::v1 as auth;
use pb::zitadel::auth::v1::auth_service_server::AuthService;
use pb::zitadel::v1::{ErrorDetail, ObjectDetails};

/// The methods served, for metric labels (a fixed set: clients cannot add series).
pub const METHODS: [&str; 5] = [
    "GetMyPhone",
    "SetMyPhone",
    "VerifyMyPhone",
    "ResendMyPhoneVerification",
    "RemoveMyPhone",
];

/// The catalog entry of an error as a gRPC status, in English.
pub fn status_of(err: &ApiError) -> Status {
    status_in(err, Language::ENGLISH)
}

/// The catalog entry of an error as a gRPC status: code, `"<text> (<id>)"` in `language`, and
/// the `zitadel.v1.ErrorDetail` inside `grpc-status-details-bin`; rows without an id
/// (validation, a missing auth header) carry the plain message and no details, as ZITADEL's do.
pub fn status_in(err: &ApiError, language: Language) -> Status {
    let entry = err.entry();
    let code = tonic::Code::from_i32(entry.grpc_code);
    let text = err.text_in(language);
    let text = text.as_ref();
    let mut status = match entry.id {
        Some(id) => {
            let message = format!("{text} ({id})");
            let detail = ErrorDetail {
                id: id.to_owned(),
                message: text.to_owned(),
            };
            let details = pb::google::rpc::Status {
                code: entry.grpc_code,
                message: message.clone(),
                details: vec![prost_types::Any {
                    type_url: ERROR_DETAIL_TYPE.to_owned(),
                    value: detail.encode_to_vec(),
                }],
            };
            Status::with_details(code, message, details.encode_to_vec().into())
        }
        None => Status::new(code, text),
    };
    if let Some(secs) = err.retry_after_secs() {
        status.metadata_mut().insert("retry-after", secs.into());
    }
    status
}

fn timestamp(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Details of a mutation: `change_date` set, `creation_date` unset (as ZITADEL answers).
fn change_details(change: Change, owner: &ResourceOwner) -> Option<ObjectDetails> {
    Some(ObjectDetails {
        sequence: change.sequence,
        creation_date: None,
        change_date: Some(timestamp(change.changed_at)),
        resource_owner: owner.to_string(),
    })
}

pub struct PhoneGrpc {
    state: Arc<AppState>,
}

impl PhoneGrpc {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    async fn authenticate<T>(&self, req: &Request<T>) -> Result<AuthenticatedUser, ApiError> {
        let values = req.metadata().get_all("authorization");
        let token = single_bearer_token(values.iter().map(|v| v.as_bytes()))?;
        let claims = self.state.verifier.verify(token).await?;
        // The same `user` field the REST handlers' spans carry.
        tracing::Span::current().record("user", tracing::field::display(&claims.user_id));
        let accept_language = req.metadata().get_all("accept-language");
        Ok(claims.speaking(
            &self.state.negotiator,
            accept_language.iter().map(|v| v.as_bytes()),
        ))
    }

    /// Authenticates the call and runs `work` for the caller, whose language its errors
    /// answer in; times the call, counts it by method and code, and logs it like a REST
    /// request.
    async fn serve<M, T>(
        &self,
        method: &'static str,
        request: &Request<M>,
        work: impl AsyncFnOnce(AuthenticatedUser) -> Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        let call = async {
            let user = self
                .authenticate(request)
                .await
                .map_err(|error| Localized {
                    error,
                    language: Language::ENGLISH,
                })?;
            let language = user.language;
            work(user)
                .await
                .map_err(|error| Localized { error, language })
        };
        let start = Instant::now();
        let span = tracing::info_span!("grpc", method, user = tracing::field::Empty);
        let result = call
            .instrument(span)
            .await
            .map_err(|e| status_in(&e.error, e.language));
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        let elapsed = start.elapsed();
        self.state
            .metrics
            .observe_grpc(method, code as i32, elapsed.as_secs_f64());
        tracing::debug!(
            method,
            code = code as i32,
            elapsed_us = elapsed.as_micros() as u64,
            "gRPC call"
        );
        result.map(Response::new)
    }
}

/// The client's address as the routing layer resolved it (the HTTP request's extensions
/// reach tonic's).
fn client_of<T>(req: &Request<T>) -> Option<std::net::IpAddr> {
    req.extensions().get::<ClientAddr>().and_then(|c| c.0)
}

fn decode_phone(raw: &str) -> Result<PhoneNumber, ApiError> {
    validate_phone_field(raw).map_err(|m| ApiError::Validation(m.to_owned()))?;
    Ok(PhoneNumber::parse(raw)?)
}

fn decode_code(raw: &str) -> Result<VerificationCode, ApiError> {
    VerificationCode::parse(raw).map_err(|m| ApiError::Validation(m.to_owned()))
}

#[tonic::async_trait]
impl AuthService for PhoneGrpc {
    async fn get_my_phone(
        &self,
        request: Request<auth::GetMyPhoneRequest>,
    ) -> Result<Response<auth::GetMyPhoneResponse>, Status> {
        self.serve("GetMyPhone", &request, async |user| {
            let state = self.state.service.get(&user.user_id).await?;
            Ok(auth::GetMyPhoneResponse {
                details: Some(ObjectDetails {
                    sequence: state.sequence,
                    creation_date: state.created_at.map(timestamp),
                    change_date: state.changed_at.map(timestamp),
                    resource_owner: user.resource_owner.to_string(),
                }),
                // A user without a phone gets an empty `phone`, as over REST.
                phone: Some(pb::zitadel::user::v1::Phone {
                    phone: state
                        .phone
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    is_phone_verified: state.phone.is_some() && state.verified,
                }),
            })
        })
        .await
    }

    async fn set_my_phone(
        &self,
        request: Request<auth::SetMyPhoneRequest>,
    ) -> Result<Response<auth::SetMyPhoneResponse>, Status> {
        self.serve("SetMyPhone", &request, async |user| {
            let phone = decode_phone(&request.get_ref().phone)?;
            let change = self
                .state
                .service
                .set(
                    &user.user_id,
                    &user.resource_owner,
                    phone,
                    user.language,
                    client_of(&request),
                )
                .await?;
            Ok(auth::SetMyPhoneResponse {
                details: change_details(change, &user.resource_owner),
            })
        })
        .await
    }

    async fn verify_my_phone(
        &self,
        request: Request<auth::VerifyMyPhoneRequest>,
    ) -> Result<Response<auth::VerifyMyPhoneResponse>, Status> {
        self.serve("VerifyMyPhone", &request, async |user| {
            let code = decode_code(&request.get_ref().code)?;
            let change = self
                .state
                .service
                .verify(&user.user_id, &user.resource_owner, &code)
                .await?;
            Ok(auth::VerifyMyPhoneResponse {
                details: change_details(change, &user.resource_owner),
            })
        })
        .await
    }

    async fn resend_my_phone_verification(
        &self,
        request: Request<auth::ResendMyPhoneVerificationRequest>,
    ) -> Result<Response<auth::ResendMyPhoneVerificationResponse>, Status> {
        self.serve("ResendMyPhoneVerification", &request, async |user| {
            let change = self
                .state
                .service
                .resend(
                    &user.user_id,
                    &user.resource_owner,
                    user.language,
                    client_of(&request),
                )
                .await?;
            Ok(auth::ResendMyPhoneVerificationResponse {
                details: change_details(change, &user.resource_owner),
            })
        })
        .await
    }

    async fn remove_my_phone(
        &self,
        request: Request<auth::RemoveMyPhoneRequest>,
    ) -> Result<Response<auth::RemoveMyPhoneResponse>, Status> {
        self.serve("RemoveMyPhone", &request, async |user| {
            let change = self
                .state
                .service
                .remove(&user.user_id, &user.resource_owner)
                .await?;
            Ok(auth::RemoveMyPhoneResponse {
                details: change_details(change, &user.resource_owner),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DomainError;

    #[test]
    fn catalog_rows_carry_their_detail_and_validation_does_not() {
        let status = status_of(&ApiError::Domain(DomainError::CodeInvalid));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "Code is invalid (COMMAND-sM0cs)");
        let details = pb::google::rpc::Status::decode(status.details()).unwrap();
        assert_eq!(details.code, 3);
        assert_eq!(details.details[0].type_url, ERROR_DETAIL_TYPE);
        let detail = ErrorDetail::decode(details.details[0].value.as_slice()).unwrap();
        assert_eq!(detail.id, "COMMAND-sM0cs");
        assert_eq!(detail.message, "Code is invalid");

        let status = status_of(&ApiError::AuthHeaderMissing);
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), "auth header missing");
        assert!(status.details().is_empty());

        let throttled = status_of(&ApiError::Domain(DomainError::SendThrottled {
            retry_after_secs: 17,
        }));
        assert_eq!(throttled.code(), tonic::Code::ResourceExhausted);
        assert_eq!(throttled.metadata().get("retry-after").unwrap(), "17");
        let limited = status_of(&ApiError::Domain(DomainError::SendLimited {
            rule: crate::domain::Rule::Destination,
            retry_after_secs: 1800,
        }));
        assert_eq!(limited.code(), tonic::Code::ResourceExhausted);
        assert_eq!(limited.metadata().get("retry-after").unwrap(), "1800");
        assert!(limited.message().ends_with("(PHONEPROOF-dest1)"));
        assert_eq!(
            status_of(&ApiError::Unavailable).code(),
            tonic::Code::Unavailable
        );
    }

    #[test]
    fn timestamps_split_milliseconds_exactly() {
        assert_eq!(
            timestamp(1_718_261_075_471),
            prost_types::Timestamp {
                seconds: 1_718_261_075,
                nanos: 471_000_000
            }
        );
        assert_eq!(
            timestamp(-1),
            prost_types::Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
    }
}
