//! Builds the application from settings: store, secrets, application service, auth, routes,
//! outbox worker, listener.
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, IntoResponse, Route, http::HeaderValue, http::header};
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::app::PhoneService;
use crate::auth::TokenVerifier;
use crate::client_addr::ClientAddr;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{AuthMode, Settings};
use crate::domain::{CodeHasher, PhoneNumber, Policies};
use crate::error::{ApiError, Localized};
use crate::i18n::Negotiator;
use crate::listener::BoundedAcceptor;
use crate::metrics::{MethodLabel, Metrics};
use crate::outbox::Worker;
use crate::routes::{ops, phone};
use crate::sealed_sms::SmsSealer;
use crate::secrets::{ConfiguredKeys, Secrets, SecretsError};
use crate::server::ConnectionLimits;
use crate::sms::Provider;
use crate::sms::verify::TwilioVerify;
use crate::state::AppState;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The data directory holds phone numbers and keys: only the service's user may enter it.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The data directory 0700 and every file in it 0600.
fn keep_private(dir: &std::path::Path, warn: bool) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let tighten = |path: &std::path::Path, mode: u32| {
            let Ok(meta) = std::fs::metadata(path) else {
                return;
            };
            if meta.permissions().mode() & 0o077 == 0 {
                return;
            }
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
                Ok(()) if warn => tracing::warn!(
                    path = %path.display(),
                    "was readable by other users; now {mode:o}"
                ),
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot make it private")
                }
            }
        };
        tighten(dir, 0o700);
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                tighten(&entry.path(), 0o600);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, warn);
}

fn configured_keys(settings: &Settings) -> ConfiguredKeys {
    let signing_key = match &settings.auth.mode {
        AuthMode::Local { signing_key, .. } => signing_key.as_ref(),
        AuthMode::Jwks { .. } => None,
    };
    let key = |k: Option<&crate::config::Key32>| k.map(|k| *k.expose());
    ConfiguredKeys {
        signing_seed: key(signing_key),
        code_key: key(settings.code.secret.as_ref()),
        outbox_key: key(settings.sms.encryption_key.as_ref()),
    }
}

/// Verify mode's client for checking codes, when Verify mode is on.
fn twilio_verify(sms: &crate::config::SmsSettings) -> Option<TwilioVerify> {
    match &sms.provider {
        crate::config::SmsProvider::TwilioVerify(v) => {
            Some(TwilioVerify::new(v, crate::sms::http_client(sms.timeout)))
        }
        _ => None,
    }
}

/// Everything `serve`, `worker` and the CLI tools share: the database is connected and
/// migrated once, the secrets resolved from it, and the application service started.
pub struct Core {
    pub settings: Settings,
    pub secrets: Secrets,
    pub service: PhoneService,
    pub sealer: SmsSealer,
    pub metrics: Arc<Metrics>,
}

impl Core {
    pub async fn build(settings: Settings, clock: Option<SharedClock>) -> Result<Core, StartError> {
        let url = settings.database_url();
        let url = url.expose_secret();
        let local = !crate::store::is_postgres_url(url);
        if local {
            create_private_dir(&settings.data_dir).map_err(|source| StartError::DataDir {
                path: settings.data_dir.display().to_string(),
                source,
            })?;
            // Files an earlier version left readable by others are tightened, and said so.
            keep_private(&settings.data_dir, true);
        }
        let store = Store::connect(url, &settings.pg_tuning()).await?;
        let secrets =
            crate::secrets::resolve(&configured_keys(&settings), &store, &settings.data_dir)
                .await?;
        if local {
            // The database, its WAL and shared-memory files were just created with the umask.
            keep_private(&settings.data_dir, false);
        }
        let sealer = SmsSealer::new(&secrets.outbox_key, &settings.sms.texts);
        let policies = Policies {
            code: settings.code.policy.clone(),
            send: settings.code.send.clone(),
            destinations: settings.fraud.destinations.clone(),
            limits: settings.fraud.limits.clone(),
        };
        let metrics = Arc::new(Metrics::default());
        let service = PhoneService::new(
            store,
            clock.unwrap_or_else(|| Arc::new(SystemClock)),
            policies,
            CodeHasher::new(secrets.code_key),
            sealer.clone(),
            twilio_verify(&settings.sms),
            metrics.clone(),
        );
        Ok(Core {
            settings,
            secrets,
            service,
            sealer,
            metrics,
        })
    }

    pub fn worker(&self) -> Arc<Worker> {
        Arc::new(Worker {
            service: self.service.clone(),
            provider: Provider::from_settings(&self.settings.sms),
            sealer: self.sealer.clone(),
            settings: self.settings.outbox.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// One line per choice in effect, so a new user sees what runs.
    pub fn announce(&self) {
        for line in self.settings.to_string().lines() {
            tracing::info!("{line}");
        }
    }
}

/// The label of every path under the gRPC services.
const GRPC_ROUTE: &str = "/grpc";

fn route_label(path: &str) -> &'static str {
    match path {
        phone::PHONE_PATH => phone::PHONE_PATH,
        phone::VERIFY_PATH => phone::VERIFY_PATH,
        phone::RESEND_PATH => phone::RESEND_PATH,
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        p if p.starts_with("/swagger-ui") => "/swagger-ui",
        p if crate::grpc::PATH_PREFIXES
            .iter()
            .any(|prefix| p.starts_with(prefix)) =>
        {
            GRPC_ROUTE
        }
        _ => "unmatched",
    }
}

fn allowed_methods(path: &str) -> &'static str {
    match path {
        phone::PHONE_PATH => "GET, PUT, DELETE",
        phone::VERIFY_PATH | phone::RESEND_PATH => "POST",
        _ => "GET",
    }
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> poem::Response {
    ApiError::Internal.to_response()
}

/// The whole HTTP application; every non-200 answer leaves here as google.rpc.Status JSON.
pub fn build_routes(state: Arc<AppState>) -> impl Endpoint<Output = poem::Response> {
    let metrics = state.metrics.clone();
    let body_limit = state.body_limit as u64;
    let verifier = state.verifier.clone();
    let negotiator = state.negotiator;
    let trusted_proxies = state.trusted_proxies.clone();
    let grpc = Arc::new(crate::grpc::endpoint(state.clone()));
    let mut route = ops::routes(phone::routes(Route::new()));
    for prefix in crate::grpc::PATH_PREFIXES {
        route = route.nest_no_strip(prefix, grpc.clone());
    }
    route
        .data(state)
        .data(verifier)
        .data(negotiator)
        // A panic in a handler answers 500 in the contract's shape instead of a dropped
        // connection; the panic itself is logged by the panic hook.
        .with(CatchPanic::new().with_handler(panic_response))
        .around(move |ep, mut req| {
            let metrics = metrics.clone();
            // Resolved once here for both surfaces (REST and gRPC read it from the request).
            let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
            let client = ClientAddr(trusted_proxies.client_of(peer, req.headers()));
            req.extensions_mut().insert(client);
            async move {
                // Refused before a byte of the body is read: with `Expect: 100-continue` the
                // client is told 413 instead of being invited to upload.
                let declared = req
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared.is_some_and(|len| len > body_limit) {
                    let mut resp = ApiError::PayloadTooLarge.to_response();
                    if req.version() < poem::http::Version::HTTP_2 {
                        // The connection closes; what is still coming is drained by the
                        // listener, not read as a request.
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    } else {
                        // A body dropped unread resets the stream, and some clients then lose
                        // the answer; reading a bounded amount away lets the upload end cleanly.
                        let mut req = req;
                        drain_in_background(req.take_body());
                    }
                    return Ok(resp);
                }
                // gRPC calls are counted by method and code in the service itself; a gRPC
                // content type elsewhere is an ordinary (and wrong) REST request.
                let start = Instant::now();
                // Both labels from fixed sets, taken before the request is moved.
                let method = MethodLabel::of(req.method());
                let route = route_label(req.uri().path());
                let grpc = route == GRPC_ROUTE && crate::grpc::is_grpc_request(&req);
                let mut resp = match ep.call(req).await {
                    Ok(r) => r.into_response(),
                    Err(e) => {
                        // In the caller's language when the handler knew it.
                        let localized = Localized::from_poem(&e);
                        let mut r = localized.to_response();
                        if localized.error == ApiError::MethodNotAllowed {
                            r.headers_mut().insert(
                                header::ALLOW,
                                HeaderValue::from_static(allowed_methods(route)),
                            );
                        }
                        r
                    }
                };
                if matches!(
                    route,
                    phone::PHONE_PATH | phone::VERIFY_PATH | phone::RESEND_PATH
                ) {
                    // Phone numbers are personal data: no cache on the way may keep them.
                    resp.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
                if !grpc {
                    metrics.observe_request(
                        route,
                        method,
                        resp.status().as_u16(),
                        start.elapsed().as_secs_f64(),
                    );
                }
                Ok(resp)
            }
        })
}

/// Reads and discards a refused request's body, at most 4 MiB and 5 s, then drops it.
fn drain_in_background(body: poem::Body) {
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut stream = body.into_bytes_stream();
        let mut left: usize = 4 << 20;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(chunk)) = stream.next().await {
                left = left.saturating_sub(chunk.len());
                if left == 0 {
                    break;
                }
            }
        })
        .await;
    });
}

pub struct Application {
    acceptor: BoundedAcceptor,
    limits: ConnectionLimits,
    port: u16,
    state: Arc<AppState>,
    worker: Arc<Worker>,
    run_worker: bool,
}

impl Application {
    /// Builds everything and binds the listener (port 0 picks a free one).
    pub async fn build(
        settings: Settings,
        clock: Option<SharedClock>,
    ) -> Result<Application, StartError> {
        let core = Core::build(settings, clock).await?;
        core.announce();
        // The first parse loads libphonenumber's metadata (~100 ms): do it now, not on a request.
        let _ = PhoneNumber::parse("+41 71 000 00 00");
        crate::i18n::load();
        let s = &core.settings;
        let verifier = Arc::new(TokenVerifier::new(&s.auth, &core.secrets.signing_seed)?);
        verifier.warm().await;
        let addr = s.listen;
        let acceptor = TcpListener::bind(addr)
            .into_acceptor()
            .await
            .map_err(|source| StartError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .unwrap_or_default();
        tracing::info!(
            "listening on http://{}:{port} (Swagger UI at /swagger-ui/)",
            s.listen.ip()
        );
        let worker = core.worker();
        let run_worker = s.outbox.worker;
        if !run_worker {
            tracing::info!("outbox: no delivery worker in this process (outbox.worker = false)");
        }
        let state = Arc::new(AppState {
            service: core.service.clone(),
            verifier,
            negotiator: Negotiator {
                default: s.i18n.default_language,
            },
            body_limit: s.body_limit,
            metrics: core.metrics.clone(),
            grpc_web_origins: s.grpc_web_origins.clone(),
            trusted_proxies: s.fraud.trusted_proxies.clone(),
            openapi_json: crate::openapi::openapi_json(),
            swagger_config: Arc::new(utoipa_swagger_ui::Config::new(["/openapi.json"])),
        });
        Ok(Application {
            acceptor: BoundedAcceptor::new(
                acceptor,
                s.max_connections,
                s.idle_timeout,
                s.header_read_timeout,
            ),
            limits: ConnectionLimits {
                header_read_timeout: s.header_read_timeout,
                max_header_bytes: s.max_header_bytes,
                http2_max_concurrent_streams: s.http2_max_concurrent_streams,
                http2_keepalive_interval: s.http2_keepalive_interval,
                request_timeout: s.request_timeout,
                max_requests_in_flight: s.max_requests_in_flight,
                drain_timeout: Duration::from_secs(10),
            },
            port,
            state,
            worker,
            run_worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// The HTTP application itself, for calling it in process (the fuzz target does).
    pub fn endpoint(&self) -> poem::endpoint::BoxEndpoint<'static> {
        build_routes(self.state.clone()).boxed()
    }

    /// The delivery worker of this application (whether or not `run_until` runs it).
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    /// Serves until `stop` resolves, then drains requests and stops the worker.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (tx, rx) = watch::channel(false);
        let worker_task = self.run_worker.then(|| tokio::spawn(self.worker.run(rx)));
        let app = build_routes(self.state).map_to_response().boxed();
        let result = crate::server::serve(self.acceptor, app, self.limits, stop).await;
        let _ = tx.send(true);
        if let Some(t) = worker_task {
            let _ = t.await;
        }
        result
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
