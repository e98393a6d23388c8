//! Crash safety with the real binary: SIGKILL between Set and delivery loses nothing.
use std::time::Duration;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::binary::{BinaryServer, token};
use crate::helpers::answer;

fn settings(dir: &std::path::Path, provider: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("PHONEPROOF_DATA_DIR", dir.display().to_string()),
        ("PHONEPROOF_SMS_PROVIDER", "http".into()),
        ("PHONEPROOF_SMS_HTTP_URL", format!("{}/sms", provider.uri())),
        ("PHONEPROOF_SMS_HTTP_SIGNING_KEY", "whsec-crash".into()),
        ("PHONEPROOF_OUTBOX_POLL_INTERVAL_MS", "100".into()),
    ]
}

fn with(
    mut base: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    base.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    base
}

async fn set_phone(server: &BinaryServer, token: &str) {
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

pub async fn wait_for_requests(provider: &MockServer, n: usize) {
    for _ in 0..400 {
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
    let env = settings(dir.path(), &provider);
    // First life: no worker, so the process dies between Set and any delivery.
    let first =
        BinaryServer::start(&with(env.clone(), &[("PHONEPROOF_OUTBOX_WORKER", "false")])).await;
    set_phone(&first, &token(&env, "crash-user")).await;
    let log1 = first.kill();
    assert!(provider.received_requests().await.unwrap().is_empty());

    let second = BinaryServer::start(&env).await;
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
    let env = with(
        settings(dir.path(), &provider),
        &[
            // The process is killed well inside the 1 s send timeout; the lease outlives it.
            ("PHONEPROOF_OUTBOX_LEASE_SECS", "2"),
            ("PHONEPROOF_SMS_TIMEOUT_SECS", "1"),
        ],
    );
    let first = BinaryServer::start(&env).await;
    set_phone(&first, &token(&env, "crash-user")).await;
    wait_for_requests(&provider, 1).await;
    first.kill();

    let second = BinaryServer::start(&env).await;
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

#[tokio::test]
async fn sigterm_finishes_the_send_in_flight_before_exiting() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1500)))
        .expect(1)
        .mount(&provider)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let env = settings(dir.path(), &provider);
    let server = BinaryServer::start(&env).await;
    set_phone(&server, &token(&env, "graceful")).await;
    wait_for_requests(&provider, 1).await;
    let (clean, log) = server.terminate(Duration::from_secs(20)).await;
    assert!(clean, "exit status after SIGTERM:\n{log}");
    provider.verify().await;
    let url = format!("sqlite://{}", dir.path().join("phoneproof.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM sms_outbox")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        status, "delivered",
        "the in-flight send was finished and recorded"
    );
}
