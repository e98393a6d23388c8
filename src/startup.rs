//! Builds the application from settings: store, auth, routes, outbox worker, listener.
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{Endpoint, EndpointExt, IntoResponse, Route, Server, http::HeaderValue, http::header};
use tokio::sync::{Notify, watch};

use crate::auth::TokenVerifier;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{AuthMode, Settings, SmsProviderKind};
use crate::crypto::{Secrets, decode_key};
use crate::domain::{CodeHasher, CodePolicy, PhoneNumber, SendPolicy};
use crate::error::ApiError;
use crate::metrics::{MethodLabel, Metrics};
use crate::outbox::{OutboxCodec, Worker};
use crate::routes::{ops, phone};
use crate::sms::Provider;
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub verifier: TokenVerifier,
    pub clock: SharedClock,
    pub code_policy: Arc<CodePolicy>,
    pub send_policy: Arc<SendPolicy>,
    pub hasher: CodeHasher,
    pub body_limit: usize,
    pub metrics: Arc<Metrics>,
    pub openapi_json: String,
    pub swagger_config: Arc<utoipa_swagger_ui::Config<'static>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secrets(#[from] crate::crypto::SecretsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Resolves the three server secrets: configured ones win; the rest come from the database
/// on PostgreSQL (shared by all replicas) or from the data dir on SQLite.
pub async fn resolve_secrets(settings: &Settings) -> Result<Secrets, StartError> {
    let configured = [
        settings.auth.signing_key.as_deref(),
        settings.code.secret.as_deref(),
        settings.sms.encryption_key.as_deref(),
    ]
    .map(|k| k.and_then(decode_key));
    let mut secrets = match configured {
        [Some(signing_seed), Some(code_key), Some(outbox_key)] => {
            return Ok(Secrets {
                signing_seed,
                code_key,
                outbox_key,
            });
        }
        _ => {
            let url = settings.effective_database_url();
            if crate::store::is_postgres_url(&url) {
                crate::store::shared_secrets(&url, &settings.pg_tuning(), &Secrets::generate())
                    .await?
            } else {
                Secrets::load_or_create(&settings.data_dir)?
            }
        }
    };
    if let Some(k) = configured[0] {
        secrets.signing_seed = k;
    }
    if let Some(k) = configured[1] {
        secrets.code_key = k;
    }
    if let Some(k) = configured[2] {
        secrets.outbox_key = k;
    }
    Ok(secrets)
}

/// Everything the store and worker need, shared by `serve` and `worker`.
pub struct Core {
    pub settings: Settings,
    pub secrets: Secrets,
    pub store: Store,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub codec: Arc<OutboxCodec>,
    pub wakeup: Arc<Notify>,
}

impl Core {
    pub async fn build(settings: Settings, clock: Option<SharedClock>) -> Result<Core, StartError> {
        let secrets = resolve_secrets(&settings).await?;
        if !crate::store::is_postgres_url(&settings.effective_database_url()) {
            std::fs::create_dir_all(&settings.data_dir).map_err(|source| {
                crate::crypto::SecretsError::Io {
                    path: settings.data_dir.display().to_string(),
                    source,
                }
            })?;
        }
        let codec = Arc::new(OutboxCodec::new(&secrets.outbox_key, &settings.sms.text));
        let wakeup = Arc::new(Notify::new());
        let store = Store::connect(
            &settings.effective_database_url(),
            &settings.pg_tuning(),
            codec.clone(),
            wakeup.clone(),
        )
        .await?;
        Ok(Core {
            clock: clock.unwrap_or_else(|| Arc::new(SystemClock)),
            metrics: Arc::new(Metrics::default()),
            settings,
            secrets,
            store,
            codec,
            wakeup,
        })
    }

    pub fn worker(&self) -> Arc<Worker> {
        Arc::new(Worker {
            store: self.store.clone(),
            provider: Provider::from_settings(&self.settings.sms),
            codec: self.codec.clone(),
            clock: self.clock.clone(),
            settings: self.settings.outbox.clone(),
            metrics: self.metrics.clone(),
            wakeup: self.wakeup.clone(),
        })
    }

    /// One line per choice in effect, so a new user sees what runs.
    pub fn announce(&self) {
        let s = &self.settings;
        let db = s.effective_database_url();
        let db_shown = db.split('@').next_back().unwrap_or(&db);
        tracing::info!("data dir: {}", s.data_dir.display());
        if db.starts_with("sqlite:") {
            tracing::info!("database: {db_shown} (SQLite, WAL, synchronous=NORMAL)");
        } else {
            tracing::info!("database: {db_shown}");
        }
        match s.auth.mode {
            AuthMode::Local => tracing::info!(
                "auth: local tokens (issuer {}, audience {}); get one with `phoneproof token --user <id> --org <id>`",
                s.auth.issuer,
                s.auth.audience
            ),
            AuthMode::Jwks => tracing::info!(
                "auth: JWKS from {} (issuer {}, audience {})",
                s.auth.jwks_url.as_deref().unwrap_or(""),
                s.auth.issuer,
                s.auth.audience
            ),
        }
        tracing::info!(
            "auth: resource owner claim `{}`",
            s.auth.resource_owner_claim
        );
        match s.sms.provider {
            SmsProviderKind::Log => tracing::info!(
                "sms: log provider: messages (with their codes) go to this log{}; for local use only",
                s.sms
                    .log_file
                    .as_ref()
                    .map(|f| format!(" and to {}", f.display()))
                    .unwrap_or_default()
            ),
            SmsProviderKind::Http => tracing::info!(
                "sms: HTTP provider{}",
                if s.sms.http.signing_key.is_some() {
                    " (signed requests)"
                } else {
                    " (unsigned requests)"
                }
            ),
            SmsProviderKind::Twilio => {
                tracing::info!("sms: Twilio provider at {}", s.sms.twilio.base_url)
            }
        }
        tracing::info!(
            "codes: {} characters of {:?}, valid {} s, {} wrong attempts allowed (0 = unlimited)",
            s.code.length,
            s.code.alphabet,
            s.code.lifetime_secs,
            s.code.max_attempts
        );
        tracing::info!(
            "sends: resend cooldown {} s, at most {} codes per {} s per user",
            s.code.resend_cooldown_secs,
            s.code.max_per_window,
            s.code.window_secs
        );
    }
}

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

/// The whole HTTP application; every non-200 answer leaves here as google.rpc.Status JSON.
pub fn build_routes(state: Arc<AppState>) -> impl Endpoint<Output = poem::Response> {
    let metrics = state.metrics.clone();
    ops::routes(phone::routes(Route::new()))
        .data(state)
        .around(move |ep, req| {
            let metrics = metrics.clone();
            async move {
                let start = Instant::now();
                // Both labels from fixed sets, taken before the request is moved.
                let method = MethodLabel::of(req.method());
                let route = route_label(req.uri().path());
                let resp = match ep.call(req).await {
                    Ok(r) => r.into_response(),
                    Err(e) => {
                        let api = ApiError::from_poem(&e);
                        let mut r = api.to_response();
                        if api == ApiError::MethodNotAllowed {
                            r.headers_mut().insert(
                                header::ALLOW,
                                HeaderValue::from_static(allowed_methods(route)),
                            );
                        }
                        r
                    }
                };
                metrics.observe_request(
                    route,
                    method,
                    resp.status().as_u16(),
                    start.elapsed().as_secs_f64(),
                );
                Ok(resp)
            }
        })
}

pub struct Application {
    acceptor: TcpAcceptor,
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
        let s = &core.settings;
        let verifier = TokenVerifier::new(&s.auth, &core.secrets.signing_seed)?;
        verifier.warm().await;
        let addr = s.listen.clone();
        let acceptor = TcpListener::bind(addr.clone())
            .into_acceptor()
            .await
            .map_err(|source| StartError::Listen {
                addr: addr.clone(),
                source,
            })?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .unwrap_or_default();
        tracing::info!(
            "listening on http://{}:{port} (Swagger UI at /swagger-ui/)",
            s.listen_addr().ip()
        );
        let worker = core.worker();
        let run_worker = s.outbox.worker;
        if !run_worker {
            tracing::info!("outbox: no delivery worker in this process (outbox.worker = false)");
        }
        let state = Arc::new(AppState {
            verifier,
            clock: core.clock.clone(),
            code_policy: Arc::new(s.code_policy()),
            send_policy: Arc::new(s.send_policy()),
            hasher: CodeHasher::new(core.secrets.code_key),
            body_limit: s.body_limit,
            metrics: core.metrics.clone(),
            openapi_json: crate::openapi::openapi_json(),
            swagger_config: Arc::new(utoipa_swagger_ui::Config::new(["/openapi.json"])),
            store: core.store.clone(),
        });
        Ok(Application {
            acceptor,
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
        let app = build_routes(self.state);
        let result = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, stop, Some(Duration::from_secs(10)))
            .await;
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
