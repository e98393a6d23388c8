//! The five "my phone" routes of ZITADEL's Auth API.
use std::net::IpAddr;
use std::sync::Arc;

use poem::web::{Data, Json};
use poem::{Body, Request, Route, get, handler, http::header, post};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::Change;
use crate::auth::AuthenticatedUser;
use crate::client_addr::ClientAddr;
use crate::clock::rfc3339;
use crate::domain::ResourceOwner;
use crate::error::{ApiError, Localized};
use crate::routes::body::{
    ResendMyPhoneVerificationRequest, SetMyPhoneRequest, VerifyMyPhoneRequest, decode_resend,
    decode_set_phone, decode_verify_code,
};
use crate::state::AppState;

pub const PHONE_PATH: &str = "/auth/v1/users/me/phone";
pub const VERIFY_PATH: &str = "/auth/v1/users/me/phone/_verify";
pub const RESEND_PATH: &str = "/auth/v1/users/me/phone/_resend_verification";

pub const SET_DESCRIPTION: &str = "Sets a new phone number to the authenticated user. If a notification provider is configured the user will receive an sms with a code to authenticate the number.";
pub const VERIFY_DESCRIPTION: &str = "Verify the phone number of the authenticated user, with the code that has been sent to the number. State of the phone number is verified after.";

/// Object details as ZITADEL returns them; zero values are left out.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = v1ObjectDetails)]
pub struct ObjectDetails {
    /// on read: the sequence of the last event reduced by the projection
    /// on manipulation: the timestamp of the event(s) added by the manipulation
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = "uint64", example = "2")]
    pub sequence: Option<String>,
    /// on read: the timestamp of the first event of the object
    /// on create: the timestamp of the event(s) added by the manipulation
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, example = "2024-06-13T06:44:35.471Z")]
    pub creation_date: Option<String>,
    /// on read: the timestamp of the last event reduced by the projection
    /// on manipulation: the timestamp of the event(s) added by the manipulation
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, example = "2024-06-13T06:44:35.471Z")]
    pub change_date: Option<String>,
    /// resource_owner is the organization an object belongs to
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "69629023906488334")]
    pub resource_owner: Option<String>,
}

/// A user's phone; both fields are left out when there is no phone.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = v1Phone)]
pub struct Phone {
    /// The number in E.164 form.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "+41710000000")]
    pub phone: Option<String>,
    /// Whether the number was verified with a code.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(example = true)]
    pub is_phone_verified: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = v1GetMyPhoneResponse)]
pub struct GetMyPhoneResponse {
    pub details: ObjectDetails,
    pub phone: Phone,
}

macro_rules! details_response {
    ($name:ident, $schema:ident) => {
        #[derive(Debug, Serialize, ToSchema)]
        #[schema(as = $schema)]
        pub struct $name {
            pub details: ObjectDetails,
        }
    };
}

details_response!(SetMyPhoneResponse, v1SetMyPhoneResponse);
details_response!(VerifyMyPhoneResponse, v1VerifyMyPhoneResponse);
details_response!(
    ResendMyPhoneVerificationResponse,
    v1ResendMyPhoneVerificationResponse
);
details_response!(RemoveMyPhoneResponse, v1RemoveMyPhoneResponse);

/// Adds the phone routes to `route`.
pub fn routes(route: Route) -> Route {
    route
        .at(
            PHONE_PATH,
            get(get_my_phone).put(set_my_phone).delete(remove_my_phone),
        )
        .at(VERIFY_PATH, post(verify_my_phone))
        .at(RESEND_PATH, post(resend_my_phone_verification))
}

/// Details of a manipulation: the event just written, no creation date.
fn change_details(change: Change, owner: &ResourceOwner) -> ObjectDetails {
    ObjectDetails {
        sequence: Some(change.sequence.to_string()),
        creation_date: None,
        change_date: Some(rfc3339(change.changed_at)),
        resource_owner: Some(owner.to_string()),
    }
}

/// Runs a handler's work after authentication: its errors answer in the caller's language.
async fn in_language<T>(
    user: &AuthenticatedUser,
    work: impl Future<Output = Result<T, ApiError>>,
) -> poem::Result<T> {
    work.await.map_err(|error| {
        Localized {
            error,
            language: user.language,
        }
        .into()
    })
}

/// The client's address as the routing layer resolved it.
fn client_of(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ClientAddr>().and_then(|c| c.0)
}

fn content_type(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

async fn read_body(app: &AppState, req: &Request, body: Body) -> Result<Vec<u8>, ApiError> {
    // A compressed body read as plain text would be decoded as garbage, or not at all.
    if req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ApiError::UnsupportedEncoding);
    }
    body.into_bytes_limit(app.body_limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => ApiError::PayloadTooLarge,
            _ => ApiError::Validation("invalid request body: could not be read".to_owned()),
        })
}

#[utoipa::path(
    get,
    path = "/auth/v1/users/me/phone",
    operation_id = "AuthService_GetMyPhone",
    tag = "User Phone",
    summary = "Get My Phone",
    description = "Returns the phone number of the authenticated user and whether it is verified. A user without a phone gets an empty `phone` object.",
    responses((status = 200, description = "A successful response.", body = GetMyPhoneResponse)),
    security(("BearerAuth" = []))
)]
#[handler]
#[tracing::instrument(skip_all, fields(user = %user.user_id))]
pub async fn get_my_phone(
    user: AuthenticatedUser,
    Data(app): Data<&Arc<AppState>>,
) -> poem::Result<Json<GetMyPhoneResponse>> {
    in_language(&user, async {
        let state = app.service.get(&user.user_id).await?;
        let details = ObjectDetails {
            sequence: (state.sequence > 0).then(|| state.sequence.to_string()),
            creation_date: state.created_at.map(rfc3339),
            change_date: state.changed_at.map(rfc3339),
            resource_owner: Some(user.resource_owner.to_string()),
        };
        let phone = Phone {
            phone: state.phone.as_ref().map(|p| p.to_string()),
            is_phone_verified: state.phone.is_some() && state.verified,
        };
        Ok(Json(GetMyPhoneResponse { details, phone }))
    })
    .await
}

#[utoipa::path(
    put,
    path = "/auth/v1/users/me/phone",
    operation_id = "AuthService_SetMyPhone",
    tag = "User Phone",
    summary = "Set My Phone",
    description = SET_DESCRIPTION,
    request_body(content = SetMyPhoneRequest, content_type = "application/json"),
    responses((status = 200, description = "A successful response.", body = SetMyPhoneResponse)),
    security(("BearerAuth" = []))
)]
#[handler]
#[tracing::instrument(skip_all, fields(user = %user.user_id))]
pub async fn set_my_phone(
    user: AuthenticatedUser,
    Data(app): Data<&Arc<AppState>>,
    req: &Request,
    body: Body,
) -> poem::Result<Json<SetMyPhoneResponse>> {
    in_language(&user, async {
        let phone = decode_set_phone(content_type(req), &read_body(app, req, body).await?)?;
        let change = app
            .service
            .set(
                &user.user_id,
                &user.resource_owner,
                phone,
                user.language,
                client_of(req),
            )
            .await?;
        Ok(Json(SetMyPhoneResponse {
            details: change_details(change, &user.resource_owner),
        }))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/auth/v1/users/me/phone/_verify",
    operation_id = "AuthService_VerifyMyPhone",
    tag = "User Phone",
    summary = "Verify Phone",
    description = VERIFY_DESCRIPTION,
    request_body(content = VerifyMyPhoneRequest, content_type = "application/json"),
    responses((status = 200, description = "A successful response.", body = VerifyMyPhoneResponse)),
    security(("BearerAuth" = []))
)]
#[handler]
#[tracing::instrument(skip_all, fields(user = %user.user_id))]
pub async fn verify_my_phone(
    user: AuthenticatedUser,
    Data(app): Data<&Arc<AppState>>,
    req: &Request,
    body: Body,
) -> poem::Result<Json<VerifyMyPhoneResponse>> {
    in_language(&user, async {
        let code = decode_verify_code(content_type(req), &read_body(app, req, body).await?)?;
        let change = app
            .service
            .verify(&user.user_id, &user.resource_owner, &code)
            .await?;
        Ok(Json(VerifyMyPhoneResponse {
            details: change_details(change, &user.resource_owner),
        }))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/auth/v1/users/me/phone/_resend_verification",
    operation_id = "AuthService_ResendMyPhoneVerification",
    tag = "User Phone",
    summary = "Resend Phone verification",
    description = "Sends a new code to the phone number of the authenticated user; the previous code stops working. Throttled per user: a cooldown after each code and a limit of codes per rolling window; limited too per number (whoever asks), optionally per client address, and by circuit breakers per region and in total. Each limit is answered with 429 and `Retry-After`.",
    request_body(content = ResendMyPhoneVerificationRequest, content_type = "application/json"),
    responses((status = 200, description = "A successful response.", body = ResendMyPhoneVerificationResponse)),
    security(("BearerAuth" = []))
)]
#[handler]
#[tracing::instrument(skip_all, fields(user = %user.user_id))]
pub async fn resend_my_phone_verification(
    user: AuthenticatedUser,
    Data(app): Data<&Arc<AppState>>,
    req: &Request,
    body: Body,
) -> poem::Result<Json<ResendMyPhoneVerificationResponse>> {
    in_language(&user, async {
        decode_resend(content_type(req), &read_body(app, req, body).await?)?;
        let change = app
            .service
            .resend(
                &user.user_id,
                &user.resource_owner,
                user.language,
                client_of(req),
            )
            .await?;
        Ok(Json(ResendMyPhoneVerificationResponse {
            details: change_details(change, &user.resource_owner),
        }))
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/auth/v1/users/me/phone",
    operation_id = "AuthService_RemoveMyPhone",
    tag = "User Phone",
    summary = "Remove Phone Number",
    description = "Removes the phone number of the authenticated user; a pending code stops working and its SMS, if not yet sent, is not sent.",
    responses((status = 200, description = "A successful response.", body = RemoveMyPhoneResponse)),
    security(("BearerAuth" = []))
)]
#[handler]
#[tracing::instrument(skip_all, fields(user = %user.user_id))]
pub async fn remove_my_phone(
    user: AuthenticatedUser,
    Data(app): Data<&Arc<AppState>>,
) -> poem::Result<Json<RemoveMyPhoneResponse>> {
    in_language(&user, async {
        let change = app
            .service
            .remove(&user.user_id, &user.resource_owner)
            .await?;
        Ok(Json(RemoveMyPhoneResponse {
            details: change_details(change, &user.resource_owner),
        }))
    })
    .await
}
