//! Operator and documentation routes: health, readiness, metrics, the OpenAPI document and
//! Swagger UI. They live outside the contract's `/auth/v1` space.
use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path, Redirect};
use poem::{IntoResponse, Response, Route, get, handler};

use crate::error::ApiError;
use crate::state::AppState;

/// Adds the operator and documentation routes to `route`.
pub fn routes(route: Route) -> Route {
    route
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .at("/openapi.json", get(openapi_json))
        .at("/swagger-ui", get(swagger_redirect))
        .at("/swagger-ui/", get(swagger_index))
        .at("/swagger-ui/*path", get(swagger_file))
}

#[handler]
fn healthz() -> Response {
    Response::builder()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

#[handler]
async fn readyz(Data(app): Data<&Arc<AppState>>) -> poem::Result<Response> {
    app.service.ready().await.map_err(|e| {
        tracing::warn!(error = %crate::error_chain(&e), "readiness check failed");
        ApiError::Unavailable
    })?;
    Ok(Response::builder()
        .content_type("application/json")
        .body(r#"{"status":"ready"}"#))
}

#[handler]
async fn metrics(Data(app): Data<&Arc<AppState>>) -> Response {
    let queue = match app.service.store().queue_stats(app.service.now()).await {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::warn!(error = %e, "queue statistics unavailable for /metrics");
            None
        }
    };
    Response::builder()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(app.metrics.render(queue))
}

#[handler]
fn openapi_json(Data(app): Data<&Arc<AppState>>) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(app.openapi_json.clone())
}

#[handler]
fn swagger_redirect() -> impl IntoResponse {
    Redirect::permanent("/swagger-ui/")
}

#[handler]
fn swagger_index(Data(app): Data<&Arc<AppState>>) -> poem::Result<Response> {
    serve_swagger(app, "")
}

#[handler]
fn swagger_file(
    Data(app): Data<&Arc<AppState>>,
    Path(path): Path<String>,
) -> poem::Result<Response> {
    serve_swagger(app, &path)
}

const SWAGGER_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

fn serve_swagger(app: &AppState, path: &str) -> poem::Result<Response> {
    match utoipa_swagger_ui::serve(path, app.swagger_config.clone()) {
        Ok(Some(file)) => Ok(Response::builder()
            .status(StatusCode::OK)
            .content_type(file.content_type)
            // Only our own scripts, and calls to our own API ("Try it out"); Swagger UI
            // styles elements inline and draws icons from data: URIs. Never in a frame.
            .header("content-security-policy", SWAGGER_CSP)
            .header("x-frame-options", "DENY")
            .header("x-content-type-options", "nosniff")
            .body(file.bytes.to_vec())),
        Ok(None) => Err(ApiError::RouteNotFound.into()),
        Err(e) => {
            tracing::error!(error = %e, "Swagger UI asset failed");
            Err(ApiError::Internal.into())
        }
    }
}
