//! Crash safety with the real binary: SIGKILL between Set and delivery loses nothing.
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::answer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    base: String,
}

async fn start(
    dir: &std::path::Path,
    port: u16,
    provider: &MockServer,
    extra: &[(&str, &str)],
) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phoneproof"));
    cmd.arg("serve")
        .env("PHONEPROOF_LISTEN", format!("127.0.0.1:{port}"))
        .env("PHONEPROOF_DATA_DIR", dir)
        .env("PHONEPROOF_SMS_PROVIDER", "http")
        .env("PHONEPROOF_SMS_HTTP_URL", format!("{}/sms", provider.uri()))
        .env("PHONEPROOF_SMS_HTTP_SIGNING_KEY", "whsec-crash")
        .env("PHONEPROOF_OUTBOX_POLL_INTERVAL_MS", "100")
        .env("PHONEPROOF_LOG", "debug,sqlx=warn,hyper=warn,reqwest=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let server = Server {
        child: cmd.spawn().expect("binary starts"),
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(format!("{}/healthz", server.base))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.kill();
    panic!("server did not come up:\n{log}");
}

impl Server {
    /// SIGKILL, and the log it wrote.
    fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        log
    }
}

fn token(dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_phoneproof"))
        .args(["token", "--user", "crash-user", "--org", "1"])
        .env("PHONEPROOF_DATA_DIR", dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn set_phone(server: &Server, token: &str) {
    let r = reqwest::Client::new()
        .put(format!("{}/auth/v1/users/me/phone", server.base))
        .bearer_auth(token)
        .json(&serde_json::json!({"phone": "+41 71 000 00 00"}))
        .send()
        .await
        .unwrap();
    let a = answer(r).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

async fn wait_for_requests(provider: &MockServer, n: usize) {
    for _ in 0..200 {
        if provider.received_requests().await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the provider never got {n} request(s)");
}

#[tokio::test]
async fn a_message_committed_before_a_sigkill_is_delivered_once_after_restart() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&provider)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // First life: no worker, so the process dies between Set and any delivery.
    let first = start(
        dir.path(),
        port,
        &provider,
        &[("PHONEPROOF_OUTBOX_WORKER", "false")],
    )
    .await;
    let t = token(dir.path());
    set_phone(&first, &t).await;
    let log1 = first.kill();
    assert!(provider.received_requests().await.unwrap().is_empty());

    let second = start(dir.path(), port, &provider, &[]).await;
    wait_for_requests(&provider, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log2 = second.kill();
    provider.verify().await;

    let body: serde_json::Value =
        serde_json::from_slice(&provider.received_requests().await.unwrap()[0].body).unwrap();
    let code = body["args"]["code"].as_str().unwrap().to_owned();
    for log in [&log1, &log2] {
        assert!(!log.contains(&code), "the code reached the log");
        assert!(
            !log.contains("+41710000000"),
            "a full number reached the log"
        );
        assert!(
            !log.contains("whsec-crash"),
            "the signing key reached the log"
        );
    }
    assert!(
        log2.contains("+41*******00"),
        "the log names the masked number"
    );
}

#[tokio::test]
async fn a_claim_held_by_a_killed_process_is_taken_over_after_the_lease() {
    let provider = MockServer::start().await;
    // The first attempt hangs until the process is killed mid-send.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(4)))
        .up_to_n_times(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&provider)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let lease = [
        ("PHONEPROOF_OUTBOX_LEASE_SECS", "1"),
        ("PHONEPROOF_SMS_TIMEOUT_SECS", "10"),
    ];
    let first = start(dir.path(), port, &provider, &lease).await;
    set_phone(&first, &token(dir.path())).await;
    wait_for_requests(&provider, 1).await;
    first.kill();

    let second = start(dir.path(), port, &provider, &lease).await;
    wait_for_requests(&provider, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill();
    let keys: Vec<String> = provider
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2, "one interrupted attempt, one completed");
    assert_eq!(
        keys[0], keys[1],
        "the receiver can drop the repeat by its idempotency key"
    );
    provider.verify().await;
}
