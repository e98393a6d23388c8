//! Spawns the real application on a random port with a fresh SQLite file, and talks HTTP to it.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use phoneproof::clock::{Clock, ManualClock};
use phoneproof::config::{Database, Settings, SmsProvider};
use phoneproof::startup::Application;
use phoneproof::state::AppState;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ORG: &str = "69629023906488334";

pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub state: Arc<AppState>,
    pub worker: Arc<phoneproof::outbox::Worker>,
    pub dir: TempDir,
    pub sms_log: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Runs `$body` with `$c` a fresh connection to the app's database, whichever backend it is.
macro_rules! on_test_db {
    ($app:expr, $c:ident => $body:expr) => {{
        use sqlx::Connection;
        if on_postgres() {
            let mut $c = sqlx::PgConnection::connect(&$app.database_url)
                .await
                .unwrap();
            $body
        } else {
            let mut $c = sqlx::SqliteConnection::connect(&$app.database_url)
                .await
                .unwrap();
            $body
        }
    }};
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The detail id of a google.rpc.Status body, if any.
    pub fn detail_id(&self) -> Option<&str> {
        self.body["details"][0]["id"].as_str()
    }

    pub fn sequence(&self) -> u64 {
        self.body["details"]["sequence"]
            .as_str()
            .expect("sequence")
            .parse()
            .expect("number")
    }
}

pub fn test_settings(dir: &TempDir) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    s.sms.provider = SmsProvider::Log {
        file: Some(dir.path().join("sms.jsonl")),
    };
    s.outbox.poll_interval = Duration::from_millis(50);
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// PHONEPROOF_TEST_BACKEND=postgres runs the API suite on PostgreSQL (a database per test).
pub fn on_postgres() -> bool {
    std::env::var("PHONEPROOF_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(&dir);
    if on_postgres() {
        settings.database = Database::postgres(crate::postgres::fresh_database().await);
    }
    configure(&mut settings);
    spawn_app_in(dir, settings).await
}

pub async fn spawn_app_in(dir: TempDir, settings: Settings) -> TestApp {
    let database_url = settings.database_url().expose_secret().to_owned();
    let sms_log = match &settings.sms.provider {
        SmsProvider::Log { file: Some(file) } => file.clone(),
        _ => dir.path().join("sms.jsonl"),
    };
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let app = Application::build(settings, Some(clock.clone()))
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let worker = app.worker();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        database_url,
        client: reqwest::Client::new(),
        clock,
        state,
        worker,
        dir,
        sms_log,
        stop: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        self.token_for(user, ORG)
    }

    /// A token whose language claim (`locale`) is `language`.
    pub fn token_speaking(&self, user: &str, language: &str) -> String {
        self.state
            .verifier
            .issue_speaking(user, ORG, Some(language), chrono::Utc::now().timestamp())
            .expect("local token")
    }

    pub fn token_for(&self, user: &str, org: &str) -> String {
        self.state
            .verifier
            .issue(user, org, chrono::Utc::now().timestamp())
            .expect("local token")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.address, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.expect("request sent")).await
    }

    pub async fn get_phone(&self, token: &str) -> Answer {
        self.call(Method::GET, "/auth/v1/users/me/phone", Some(token), None)
            .await
    }

    pub async fn set_phone(&self, token: &str, phone: &str) -> Answer {
        self.call(
            Method::PUT,
            "/auth/v1/users/me/phone",
            Some(token),
            Some(serde_json::json!({"phone": phone})),
        )
        .await
    }

    /// `set_phone` with an owned token, for many requests at once.
    pub async fn set_phone_owned(&self, token: String, phone: String) -> Answer {
        self.set_phone(&token, &phone).await
    }

    pub async fn verify(&self, token: &str, code: &str) -> Answer {
        self.call(
            Method::POST,
            "/auth/v1/users/me/phone/_verify",
            Some(token),
            Some(serde_json::json!({"code": code})),
        )
        .await
    }

    pub async fn resend(&self, token: &str) -> Answer {
        self.call(
            Method::POST,
            "/auth/v1/users/me/phone/_resend_verification",
            Some(token),
            Some(serde_json::json!({})),
        )
        .await
    }

    pub async fn remove(&self, token: &str) -> Answer {
        self.call(Method::DELETE, "/auth/v1/users/me/phone", Some(token), None)
            .await
    }

    /// Every message the log provider wrote, oldest first.
    pub fn sms_messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.sms_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    /// Waits until `count` messages went to `to`, and returns the code of the last one.
    pub async fn wait_for_code(&self, to: &str, count: usize) -> String {
        for _ in 0..200 {
            let msgs: Vec<Value> = self
                .sms_messages()
                .into_iter()
                .filter(|m| m["to"] == to)
                .collect();
            if msgs.len() >= count {
                let text = msgs[count - 1]["text"].as_str().expect("text");
                return text
                    .rsplit(' ')
                    .next()
                    .expect("code is the last word")
                    .to_owned();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "no SMS number {count} to {to} arrived; got {:?}",
            self.sms_messages()
        );
    }

    /// Waits until the worker recorded `count` deliveries (`code.sent`) for `user`: the SMS
    /// reaches the log provider a moment before its event is written.
    pub async fn wait_for_code_sent(&self, user: &str, count: usize) {
        for _ in 0..200 {
            let sent = self
                .events(user)
                .await
                .iter()
                .filter(|e| e.event_type == "user.human.phone.code.sent")
                .count();
            if sent >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("delivery number {count} of {user} was not recorded");
    }

    /// A connection of its own holding SQLite's write lock (`BEGIN IMMEDIATE`): every write
    /// of the service waits until it commits.
    pub async fn hold_sqlite_write_lock(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&self.database_url)
            .await
            .expect("a second connection to the SQLite file");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut c)
            .await
            .expect("the write lock");
        c
    }

    /// The `/metrics` exposition.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("metrics answered")
            .text()
            .await
            .expect("metrics text")
    }

    pub fn advance(&self, ms: i64) {
        self.clock.advance_ms(ms);
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The outbox rows' statuses, in the store's listing order.
    pub async fn outbox_statuses(&self) -> Vec<String> {
        let rows = self.state.service.store().outbox().await.unwrap();
        rows.into_iter().map(|r| r.status).collect()
    }

    pub async fn events(&self, user: &str) -> Vec<phoneproof::store::StoredEvent> {
        let id = phoneproof::domain::UserId::parse(user).expect("user id");
        self.state
            .service
            .store()
            .events(id.as_ref())
            .await
            .expect("events readable")
    }

    /// Runs SQL behind the service's back (to break things), on whichever backend it uses.
    pub async fn sabotage(&self, sql: &'static str) {
        on_test_db!(self, c => {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        });
    }

    /// As `sabotage`, with one text parameter bound as `$1`.
    pub async fn sabotage_with(&self, sql: &'static str, param: &str) {
        on_test_db!(self, c => {
            sqlx::query(sql).bind(param).execute(&mut c).await.unwrap();
        });
    }

    /// One number a query behind the service's back answers (`SELECT COUNT(*) ...`).
    pub async fn scalar(&self, sql: &'static str) -> i64 {
        use sqlx::Row;
        on_test_db!(self, c => {
            sqlx::query(sql).fetch_one(&mut c).await.unwrap().get::<i64, _>(0)
        })
    }

    /// Everything stored in the tables, as text, for "never at rest" checks.
    pub async fn table_text(&self) -> String {
        use sqlx::Row;
        const DUMP: &str = "SELECT state FROM phones UNION ALL SELECT payload FROM events \
                            UNION ALL SELECT COALESCE(last_error, '') FROM sms_outbox";
        let rows: Vec<String> = on_test_db!(self, c => {
            let rows = sqlx::query(DUMP).fetch_all(&mut c).await.unwrap();
            rows.iter().map(|r| r.get(0)).collect()
        });
        rows.join("\n")
    }

    /// Stops the server (and its worker) gracefully; the data dir lives on with the caller.
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        self.dir
    }
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is JSON: {text:?}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Asserts a google.rpc.Status body with a detail (id, text) as the contract shapes it.
pub fn assert_error(a: &Answer, http: u16, code: i64, id: &str, text: &str) {
    assert_eq!(a.status.as_u16(), http, "status of {}", a.body);
    assert_eq!(a.body["code"], code, "{}", a.body);
    assert_eq!(a.body["message"], format!("{text} ({id})"), "{}", a.body);
    assert_eq!(
        a.body["details"].as_array().map(Vec::len),
        Some(1),
        "{}",
        a.body
    );
    assert_eq!(
        a.body["details"][0]["@type"],
        "type.googleapis.com/zitadel.v1.ErrorDetail"
    );
    assert_eq!(a.body["details"][0]["id"], id);
    assert_eq!(a.body["details"][0]["message"], text);
}

/// Asserts a validation error: code 3, HTTP 400, exact message, no details key.
pub fn assert_validation(a: &Answer, message: &str) {
    assert_eq!(a.status.as_u16(), 400, "{}", a.body);
    assert_eq!(a.body, serde_json::json!({"code": 3, "message": message}));
}
