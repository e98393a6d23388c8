//! The connection loop: poem's endpoint served by hyper directly, because poem's `Server` does
//! not expose the limits an open-internet server needs (a deadline for the request head, the
//! HTTP/1 header size, HTTP/2 keep-alive pings).
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::endpoint::BoxEndpoint;
use poem::listener::Acceptor;
use poem::{Endpoint, Request, Response};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

use crate::listener::BoundedAcceptor;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_keepalive_interval: Duration,
    /// A request must be read and answered (up to its response head) within this.
    pub request_timeout: Duration,
    /// Requests being handled at once, all connections together; more are answered 503.
    pub max_requests_in_flight: usize,
    /// How long requests in flight may finish once shutdown begins.
    pub drain_timeout: Duration,
}

/// What a request refused by the server itself (out of time, or too many in flight) is told,
/// in its surface's shape.
struct Refusal {
    grpc_content_type: Option<poem::http::HeaderValue>,
    http1: bool,
}

#[derive(Clone, Copy)]
enum Why {
    /// Not read and answered within `request_timeout`.
    Deadline,
    /// `max_requests_in_flight` are being served already.
    Busy,
}

impl Refusal {
    fn for_request(req: &Request) -> Self {
        let content_type = req.headers().get(poem::http::header::CONTENT_TYPE);
        Self {
            grpc_content_type: content_type
                .filter(|v| v.as_bytes().starts_with(b"application/grpc"))
                .cloned(),
            http1: req.version() < poem::http::Version::HTTP_2,
        }
    }

    fn response(&self, why: Why) -> Response {
        let (status, code, message, grpc_message) = match why {
            Why::Deadline => (
                poem::http::StatusCode::REQUEST_TIMEOUT,
                4,
                "request not completed in time",
                "request%20not%20completed%20in%20time",
            ),
            Why::Busy => (
                poem::http::StatusCode::SERVICE_UNAVAILABLE,
                14,
                "Service temporarily unavailable; retry later",
                "Service%20temporarily%20unavailable%3B%20retry%20later",
            ),
        };
        if let Some(content_type) = &self.grpc_content_type {
            // gRPC and gRPC-web: a trailers-only answer.
            return Response::builder()
                .header(poem::http::header::CONTENT_TYPE, content_type.clone())
                .header("grpc-status", code.to_string())
                .header("grpc-message", grpc_message)
                .finish();
        }
        let body = serde_json::json!({ "code": code, "message": message }).to_string();
        let mut resp = Response::builder()
            .status(status)
            .content_type("application/json")
            .header(poem::http::header::CACHE_CONTROL, "no-store")
            .body(body);
        if matches!(why, Why::Busy) {
            resp.headers_mut().insert(
                poem::http::header::RETRY_AFTER,
                poem::http::HeaderValue::from_static("1"),
            );
        }
        if self.http1 && matches!(why, Why::Deadline) {
            // The rest of a half-sent body must not be read as the next request.
            resp.headers_mut().insert(
                poem::http::header::CONNECTION,
                poem::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

/// Serves `ep` on every accepted connection until `stop` resolves, then lets requests in
/// flight finish (at most `drain_timeout`).
pub async fn serve(
    mut acceptor: BoundedAcceptor,
    ep: BoxEndpoint<'static, Response>,
    limits: ConnectionLimits,
    stop: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let ep = Arc::new(ep);
    let in_flight = Arc::new(Semaphore::new(limits.max_requests_in_flight));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (force_tx, force_rx) = watch::channel(false);
    let connections = TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let (io, local, remote, scheme) = tokio::select! {
            () = &mut stop => break,
            accepted = acceptor.accept() => accepted?,
        };
        let ep = ep.clone();
        let in_flight = in_flight.clone();
        let mut shutdown = shutdown_rx.clone();
        let mut force = force_rx.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let ep = ep.clone();
                let in_flight = in_flight.clone();
                let req = Request::from((req, local.clone(), remote.clone(), scheme.clone()));
                async move {
                    let refusal = Refusal::for_request(&req);
                    // Every request in the handler holds its head (and up to `body_limit`);
                    // past the cap it is answered at once, so that memory stays bounded
                    // whatever number of connections and streams clients open.
                    let Ok(_permit) = in_flight.try_acquire_owned() else {
                        return Ok(hyper::Response::from(refusal.response(Why::Busy)));
                    };
                    // Bounds a body sent slowly but never stalling for the idle timeout, and a
                    // stream held open on an HTTP/2 connection whose pings are answered.
                    let resp = tokio::time::timeout(limits.request_timeout, ep.get_response(req))
                        .await
                        .unwrap_or_else(|_| refusal.response(Why::Deadline));
                    Ok::<_, std::convert::Infallible>(hyper::Response::from(resp))
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(limits.http2_max_concurrent_streams)
                .max_header_list_size(limits.max_header_bytes as u32)
                .max_pending_accept_reset_streams(Some(20))
                .keep_alive_interval(Some(limits.http2_keepalive_interval))
                .keep_alive_timeout(limits.http2_keepalive_interval);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.wait_for(|stopping| *stopping) => {}
            }
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn => {}
                _ = force.wait_for(|stopping| *stopping) => {}
            }
        });
    }
    // No new connections from here on; the open ones finish what they have started.
    drop(acceptor);
    let _ = shutdown_tx.send(true);
    connections.close();
    if tokio::time::timeout(limits.drain_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "requests still running after the drain timeout; stopping anyway"
        );
        let _ = force_tx.send(true);
        connections.wait().await;
    }
    Ok(())
}
