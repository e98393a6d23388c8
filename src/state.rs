//! What every HTTP handler can reach: the application service, the token verifier, and the
//! few things the HTTP surface serves itself.
use std::sync::Arc;

use crate::app::PhoneService;
use crate::auth::TokenVerifier;
use crate::client_addr::TrustedProxies;
use crate::config::AllowedOrigins;
use crate::i18n::Negotiator;
use crate::metrics::Metrics;

pub struct AppState {
    pub service: PhoneService,
    pub verifier: Arc<TokenVerifier>,
    /// Picks the language of each authenticated request.
    pub negotiator: Negotiator,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    pub metrics: Arc<Metrics>,
    /// Origins whose pages may call gRPC-web (CORS).
    pub grpc_web_origins: AllowedOrigins,
    /// Whose forwarding headers name the client (for the per-address send limit).
    pub trusted_proxies: TrustedProxies,
    pub openapi_json: String,
    pub swagger_config: Arc<utoipa_swagger_ui::Config<'static>>,
}
