//! Puts tonic (gRPC over HTTP/2, gRPC-web over HTTP/1.1 and HTTP/2) inside the poem listener,
//! so one port serves every surface.
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use poem::endpoint::TowerCompatExt;
use poem::http;
use poem::http::{HeaderValue, Method, header};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoResponse, Request};
use prost::bytes::Bytes;

use super::health::ReadinessHealth;
use super::pb::zitadel::auth::v1::auth_service_server::AuthServiceServer;
use super::{FILE_DESCRIPTOR_SET, PhoneGrpc};
use crate::config::AllowedOrigins;
use crate::error::ApiError;
use crate::state::AppState;

/// The path prefixes (`/<package>.<Service>`) the gRPC surface answers under.
pub const PATH_PREFIXES: [&str; 4] = [
    "/zitadel.auth.v1.AuthService",
    "/grpc.reflection.v1.ServerReflection",
    "/grpc.reflection.v1alpha.ServerReflection",
    "/grpc.health.v1.Health",
];

/// `application/grpc…`, gRPC-web included: what tonic takes.
pub fn is_grpc_request(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The gRPC services behind gRPC-web translation and CORS, as one poem endpoint.
pub fn endpoint(state: Arc<AppState>) -> impl Endpoint<Output = poem::Response> + 'static {
    let cors = cors(&state.grpc_web_origins);
    let limit = state.body_limit;
    let auth = AuthServiceServer::new(PhoneGrpc::new(state.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let health = tonic_health::pb::health_server::HealthServer::new(ReadinessHealth::new(
        state.service.clone(),
    ));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = tonic::service::Routes::new(auth)
        .add_service(health)
        .add_service(
            reflection()
                .build_v1()
                .expect("the compiled descriptor set is valid"),
        )
        .add_service(
            reflection()
                .build_v1alpha()
                .expect("the compiled descriptor set is valid"),
        );
    let grpc =
        Arc::new(SyncBodies(tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), routes)).compat());
    let only_grpc = move |req: Request| {
        let grpc = grpc.clone();
        async move {
            // What tonic-web would answer with an empty 400 or 405 gets the contract's
            // error shape instead.
            if let Some(refused) = refusal(&req) {
                let mut resp = refused.to_response();
                if refused == ApiError::MethodNotAllowed {
                    resp.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("POST"));
                }
                return Ok(resp);
            }
            grpc.call(req).await.map(IntoResponse::into_response)
        }
    };
    poem::endpoint::make(only_grpc).with(cors)
}

/// The gRPC-web content types tonic-web translates (it compares them exactly).
const GRPC_WEB_TYPES: [&str; 4] = [
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
];

/// Why a request on a gRPC path cannot reach tonic, if it cannot.
fn refusal(req: &Request) -> Option<ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let web = GRPC_WEB_TYPES.contains(&content_type);
    if !web && !content_type.starts_with("application/grpc") {
        return Some(ApiError::Validation(
            "gRPC methods take application/grpc or application/grpc-web content".into(),
        ));
    }
    if req.method() != Method::POST {
        return Some(ApiError::MethodNotAllowed);
    }
    if !web && req.version() < http::Version::HTTP_2 {
        return Some(ApiError::Validation(
            "gRPC needs HTTP/2; over HTTP/1.1 send gRPC-web (application/grpc-web)".into(),
        ));
    }
    None
}

/// Browsers may call gRPC-web from another origin: the preflight is answered, and the
/// status headers an error travels in are readable by the page.
fn cors(origins: &AllowedOrigins) -> Cors {
    let cors = Cors::new()
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            "content-type",
            "authorization",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "accept-language",
        ])
        .expose_headers([
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
            "retry-after",
        ])
        .max_age(86_400);
    match origins {
        AllowedOrigins::Any => cors,
        AllowedOrigins::List(list) => cors.allow_origins(list.iter().map(String::as_str)),
    }
}

/// Makes tonic's responses fit poem's bridge: bodies that are `Sync`, and `grpc-message` in
/// the same encoding grpc-go uses.
#[derive(Clone)]
struct SyncBodies<S>(S);

impl<S, B> tower::Service<http::Request<B>> for SyncBodies<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<SyncBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let response = self.0.call(req);
        Box::pin(async move {
            let (mut parts, body) = response.await?.into_parts();
            if let Some(message) = parts.headers.get("grpc-message")
                && let Some(plain) = grpc_go_encoding(message.as_bytes())
            {
                parts.headers.insert("grpc-message", plain);
            }
            Ok(http::Response::from_parts(
                parts,
                SyncBody(Mutex::new(body)),
            ))
        })
    }
}

/// tonic's body is `Send` but not `Sync`; poem's bridge wants both. The mutex is never
/// contended (polling takes `&mut self`).
pub struct SyncBody(Mutex<tonic::body::Body>);

impl HttpBody for SyncBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let body = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        Pin::new(body).poll_frame(cx)
    }

    /// Forwarded, or a trailers-only error goes out as HEADERS without END_STREAM and
    /// grpc-js clients read every error as 13 "Received RST_STREAM with code 0".
    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size_hint()
    }
}

/// tonic percent-encodes spaces in `grpc-message`; grpc-go encodes only what is not printable
/// ASCII, and `%`. Clients decode both alike; this answers as ZITADEL (a Go server) does.
fn grpc_go_encoding(encoded: &[u8]) -> Option<HeaderValue> {
    let mut raw = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let escaped = encoded
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if encoded[i] == b'%'
            && let Some(byte) = escaped
        {
            raw.push(byte);
            i += 3;
        } else {
            raw.push(encoded[i]);
            i += 1;
        }
    }
    let mut out = String::with_capacity(raw.len());
    for byte in raw {
        if (b' '..=b'~').contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::grpc_go_encoding;

    #[test]
    fn grpc_message_keeps_printable_ascii_and_encodes_the_rest() {
        let cases: &[(&str, &str)] = &[
            (
                "Code%20is%20invalid%20(COMMAND-sM0cs)",
                "Code is invalid (COMMAND-sM0cs)",
            ),
            ("100%25", "100%25"),
            ("caf%C3%A9", "caf%C3%A9"),
            ("plain", "plain"),
            ("tail%2", "tail%252"),
        ];
        for (tonic, go) in cases {
            assert_eq!(grpc_go_encoding(tonic.as_bytes()).unwrap(), *go, "{tonic}");
        }
    }
}
