//! The whole HTTP application in process: arbitrary method, path, `Authorization`,
//! `Content-Type` and body, against a temp SQLite store. No answer is a 500 (or 503), and
//! every non-200 answer outside /swagger-ui is google.rpc.Status JSON.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::{Corpus, fuzz_target};
use phoneproof::config::Settings;
use phoneproof::startup::Application;
use phoneproof_fuzz::{
    AuthChoice, PathChoice, RouterInput, assert_status_shape, install_panic_policy,
};
use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderValue, Uri, header};
use poem::{Endpoint, Request};

struct Harness {
    rt: tokio::runtime::Runtime,
    endpoint: BoxEndpoint<'static>,
    token: String,
    // Kept alive for the life of the process (its listener, store and worker handle).
    _app: Application,
}

/// A data dir per fuzzing process; those of processes that are gone are removed first.
fn data_dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    let prefix = "phoneproof-fuzz-router-";
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(prefix)
                && !PathBuf::from(format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = tmp.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    dir
}

/// `PHONEPROOF_FUZZ_TRACE=1` prints each request and its answer (for replaying a corpus).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("PHONEPROOF_FUZZ_TRACE").is_some())
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir(),
            ..Default::default()
        };
        settings.outbox.worker = false;
        // Without the send limits most PUTs reach the storage write path instead of 429.
        settings.code.send.max_per_window = 0;
        settings.code.send.resend_cooldown_ms = 0;
        let app = rt
            .block_on(Application::build(settings, None))
            .expect("application builds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let token = app
            .state()
            .verifier
            .issue("fuzz-user", "1", now)
            .expect("local token");
        let endpoint = app.endpoint();
        Harness {
            rt,
            endpoint,
            token,
            _app: app,
        }
    })
}

fuzz_target!(
    init: {
        install_panic_policy();
        let _ = harness();
    },
    |input: RouterInput| -> Corpus {
        let h = harness();
        let Some(method) = input.method.method() else {
            return Corpus::Reject;
        };
        let path = input.path.path();
        let Ok(uri) = Uri::try_from(path.as_str()) else {
            return Corpus::Reject;
        };
        let mut req = Request::builder().method(method.clone()).uri(uri.clone());
        let auth: Option<Vec<u8>> = match &input.auth {
            AuthChoice::None => None,
            AuthChoice::Valid => Some(format!("Bearer {}", h.token).into_bytes()),
            AuthChoice::ValidLoose => Some(format!("bearer   {}  ", h.token).into_bytes()),
            AuthChoice::Raw(b) => Some(b.0.clone()),
        };
        if let Some(a) = auth {
            let Ok(v) = HeaderValue::from_bytes(&a) else {
                return Corpus::Reject;
            };
            req = req.header(header::AUTHORIZATION, v);
        }
        if let Some(ct) = input.content_type.as_str() {
            let Ok(v) = HeaderValue::from_str(ct) else {
                return Corpus::Reject;
            };
            req = req.header(header::CONTENT_TYPE, v);
        }
        let body = input.body.bytes();
        let req = req.body(body);

        let (status, headers, bytes) = h.rt.block_on(async {
            let resp = h
                .endpoint
                .call(req)
                .await
                .unwrap_or_else(|e| panic!("the endpoint returned an error, not a response: {e:?} ({input:?})"));
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp
                .into_body()
                .into_vec()
                .await
                .expect("response body reads");
            (status, headers, bytes)
        });

        let code = status.as_u16();
        if trace() {
            let shown: String = String::from_utf8_lossy(&bytes).chars().take(160).collect();
            eprintln!("{method} {path:?} -> {code} {shown}");
        }
        assert!(
            code != 500 && code != 503,
            "HTTP {code} {} for {input:?}",
            String::from_utf8_lossy(&bytes)
        );
        let under_swagger = uri.path().starts_with("/swagger-ui");
        if code != 200 && !under_swagger {
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "HTTP {code} with a body that is not JSON ({e}): {:?} for {input:?}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_status_shape(&json, &input);
            let grpc = json["code"].as_i64().unwrap();
            if grpc == 16 {
                assert_eq!(
                    headers.get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
                    Some(&b"Bearer"[..]),
                    "401 without WWW-Authenticate: Bearer for {input:?}"
                );
            }
        }
        // A contract route's 200 is a JSON object with `details` (HEAD has no body).
        let contract = matches!(input.path, PathChoice::Phone | PathChoice::Verify | PathChoice::Resend);
        if code == 200 && contract && method != poem::http::Method::HEAD {
            let json: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("HTTP 200 with a body that is not JSON ({e}) for {input:?}"));
            assert!(json.get("details").is_some_and(|d| d.is_object()), "200 without details: {json} for {input:?}");
        }
        Corpus::Keep
    }
);
