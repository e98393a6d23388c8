//! SMS delivery through real HTTP to a wiremock provider: request shapes, retries, parking,
//! dropped codes, and nothing lost while the provider is down.
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use phoneproof::config::{Settings, SmsProvider, TwilioSender, TwilioSettings};
use phoneproof::outbox::Delivery;
use serde_json::Value;
use sha2::Sha256;
use wiremock::matchers::{basic_auth, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::crash::wait_for_requests;
use crate::helpers::*;

const SIGNING_KEY: &str = "whsec-test-key";

fn http_provider(s: &mut Settings, server: &MockServer) {
    s.sms.provider = SmsProvider::Http {
        url: format!("{}/sms", server.uri()).parse().expect("a URL"),
        signing_key: Some(SIGNING_KEY.into()),
    };
    s.sms.timeout = std::time::Duration::from_secs(1);
    // Tests drive the worker step by step.
    s.outbox.worker = false;
}

fn twilio_provider(s: &mut Settings, server: &MockServer) {
    s.sms.provider = SmsProvider::Twilio(TwilioSettings {
        base_url: server.uri().parse().expect("a URL"),
        account_sid: "AC123".into(),
        auth_token: "twilio-secret".into(),
        sender: TwilioSender::From("+15005550006".into()),
    });
    s.outbox.worker = false;
}

fn signature_ok(req: &Request) -> bool {
    let Some(sig) = req
        .headers
        .get("phoneproof-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (Some(t), Some(v1)) = (
        sig.split(',').find_map(|p| p.strip_prefix("t=")),
        sig.split(',').find_map(|p| p.strip_prefix("v1=")),
    ) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SIGNING_KEY.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&req.body);
    let fresh = (chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap()).abs() < 60;
    fresh && mac.verify_slice(&hex::decode(v1).unwrap()).is_ok()
}

async fn deliver(app: &TestApp) -> Vec<Delivery> {
    app.worker.deliver_next().await.expect("worker step")
}

#[tokio::test]
async fn the_http_provider_gets_zitadels_shape_signed_with_an_idempotency_key() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| http_provider(s, &provider)).await;
    let t = app.token("hooked");
    assert_eq!(app.set_phone(&t, "+41 71 000 00 00").await.status, 200);
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);

    let received = provider.received_requests().await.unwrap();
    let req = &received[0];
    assert!(signature_ok(req), "signature recomputes");
    let key = req.headers["idempotency-key"].to_str().unwrap();
    let outbox = app.state.service.store().outbox().await.unwrap();
    assert_eq!(outbox[0].id, key, "the idempotency key is the message id");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["contextInfo"]["recipientPhoneNumber"], "+41710000000");
    assert_eq!(
        body["contextInfo"]["eventType"],
        "user.human.phone.code.added"
    );
    let code = body["args"]["code"].as_str().unwrap();
    assert_eq!(
        body["templateData"]["text"],
        format!(
            "A new phone number has been added. Please use the following code to verify it {code}"
        )
    );
    // The code works, and the delivery was recorded.
    assert_eq!(app.verify(&t, code).await.status, 200);
    let types: Vec<String> = app
        .events("hooked")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(
        types.contains(&"user.human.phone.code.sent".to_owned()),
        "{types:?}"
    );
    assert_eq!(outbox[0].status, "delivered");
    assert!(!outbox[0].has_payload, "text wiped once delivered");
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn twilio_gets_the_messages_api_form_with_basic_auth() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .and(basic_auth("AC123", "twilio-secret"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("To=%2B41710000000"))
        .and(body_string_contains("From=%2B15005550006"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(serde_json::json!({"sid": "SM1", "status": "queued"})),
        )
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| twilio_provider(s, &provider)).await;
    let t = app.token("twilio");
    app.set_phone(&t, "+41710000000").await;
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);
    let req = &provider.received_requests().await.unwrap()[0];
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let body = &form.iter().find(|(k, _)| k == "Body").unwrap().1;
    assert!(body.starts_with(
        "A new phone number has been added. Please use the following code to verify it "
    ));
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn twilio_with_a_messaging_service_sends_no_from() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("MessagingServiceSid=MG9"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| {
        twilio_provider(s, &provider);
        if let SmsProvider::Twilio(t) = &mut s.sms.provider {
            t.sender = TwilioSender::MessagingService("MG9".into());
        }
    })
    .await;
    app.set_phone(&app.token("svc"), "+41710000000").await;
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);
    let body =
        String::from_utf8(provider.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert!(!body.contains("From="), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_500_then_a_200_delivers_once_after_a_retry() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| http_provider(s, &provider)).await;
    app.set_phone(&app.token("retry"), "+41710000000").await;
    assert_eq!(deliver(&app).await, [Delivery::Retrying]);
    assert!(deliver(&app).await.is_empty(), "not due before the backoff");
    app.advance(2_000);
    // The retry is due now, two seconds after the message was queued.
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("phoneproof_outbox_due 1"), "{metrics}");
    assert!(
        metrics.contains("phoneproof_outbox_oldest_due_age_seconds 2.0\n"),
        "{metrics}"
    );
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);
    let keys: Vec<String> = provider
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys[0], keys[1], "a retry carries the same idempotency key");
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(2_500)))
        .up_to_n_times(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| http_provider(s, &provider)).await;
    app.set_phone(&app.token("slow"), "+41710000000").await;
    assert_eq!(deliver(&app).await, [Delivery::Retrying]);
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert_eq!(row.last_error.as_deref(), Some("timeout"));
    app.advance(2_000);
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn a_400_parks_the_message_without_retry_and_keeps_its_error() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400))
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| http_provider(s, &provider)).await;
    app.set_phone(&app.token("bad"), "+41710000000").await;
    assert_eq!(deliver(&app).await, [Delivery::Parked]);
    app.advance(3_600_000);
    assert!(deliver(&app).await.is_empty());
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert_eq!(row.status, "parked");
    assert!(row.last_error.as_deref().unwrap().contains("400"));
    assert!(!row.has_payload, "text wiped once parked");
    assert_eq!(row.recipient_masked, "+41*******00");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("phoneproof_sms_parked_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("phoneproof_outbox_parked 1"), "{metrics}");
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn twilio_recipient_errors_are_permanent() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})))
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| twilio_provider(s, &provider)).await;
    app.set_phone(&app.token("tw"), "+41710000000").await;
    assert_eq!(deliver(&app).await, [Delivery::Parked]);
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert!(
        row.last_error.as_deref().unwrap().contains("21211"),
        "{row:?}"
    );
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn a_429_with_retry_after_waits_at_least_that_long() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "2"))
        .up_to_n_times(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| {
        http_provider(s, &provider);
        s.outbox.base_backoff = std::time::Duration::from_millis(100);
    })
    .await;
    app.set_phone(&app.token("busy"), "+41710000000").await;
    let before = app.now_ms();
    assert_eq!(deliver(&app).await, [Delivery::Retrying]);
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert!(
        row.next_attempt_at >= before + 2_000,
        "{} < {}",
        row.next_attempt_at,
        before + 2_000
    );
    app.advance(1_900);
    assert!(deliver(&app).await.is_empty());
    app.advance(100);
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn a_replaced_codes_message_is_never_sent() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("+41710000001"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| http_provider(s, &provider)).await;
    let t = app.token("changer");
    app.set_phone(&t, "+41710000000").await;
    app.set_phone(&t, "+41710000001").await;
    let mut done = deliver(&app).await;
    done.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(done, [Delivery::Delivered, Delivery::Dropped]);
    assert_eq!(app.outbox_statuses().await, ["dropped", "delivered"]);
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn a_removed_phones_pending_message_is_dropped() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| http_provider(s, &provider)).await;
    let t = app.token("gone");
    app.set_phone(&t, "+41710000000").await;
    app.remove(&t).await;
    assert_eq!(deliver(&app).await, [Delivery::Dropped]);
    app.stop().await;
    provider.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_the_provider_is_down_sets_succeed_and_every_message_goes_out_once_later() {
    let provider = MockServer::start().await;
    let down = Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount_as_scoped(&provider)
        .await;
    let app = spawn_app_with(|s| {
        http_provider(s, &provider);
        s.outbox.worker = true; // the real background worker this time
        s.outbox.max_attempts = 50;
        // The test clock jumps a minute at a time to make retries due; a lease that outlives
        // the jumps keeps a claim in flight from being taken again, as in real time.
        s.outbox.lease = Duration::from_secs(24 * 3600);
    })
    .await;
    let users: Vec<String> = (0..20).map(|i| format!("patient-{i}")).collect();
    let calls = users.iter().enumerate().map(|(i, u)| {
        let app = &app;
        async move {
            app.set_phone(&app.token(u), &format!("+417100000{i:02}"))
                .await
        }
    });
    for a in futures::future::join_all(calls).await {
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // Let the worker fail a few rounds against the dead provider.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(provider.received_requests().await.unwrap().len() >= 20);
    drop(down);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(20)
        .mount(&provider)
        .await;
    for _ in 0..200 {
        app.advance(60_000);
        let delivered = app
            .state
            .service
            .store()
            .outbox()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.status == "delivered")
            .count();
        if delivered == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = app.state.service.store().outbox().await.unwrap();
    assert!(rows.iter().all(|r| r.status == "delivered"), "{rows:?}");
    app.stop().await;
    provider.verify().await;
}

#[tokio::test]
async fn operators_see_health_readiness_and_metrics() {
    let app = spawn_app().await;
    for p in ["/healthz", "/readyz"] {
        let r = app
            .client
            .get(format!("{}{p}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{p}");
    }
    app.set_phone(&app.token("m"), "+41710000000").await;
    app.wait_for_code("+41710000000", 1).await;
    let mut text = String::new();
    // The log line is written just before the delivery is recorded and counted.
    for _ in 0..100 {
        text = app.metrics_text().await;
        if text.contains("phoneproof_sms_sent_total 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains("phoneproof_sms_sent_total 1"), "{text}");
    assert!(text.contains(r#"phoneproof_http_request_duration_seconds_count{route="/auth/v1/users/me/phone",method="PUT",status="200"} 1"#), "{text}");
    assert!(text.contains("phoneproof_outbox_due 0"));
    app.stop().await;
}

#[tokio::test]
async fn a_message_failing_past_its_maximum_age_is_parked() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| {
        http_provider(s, &provider);
        s.outbox.max_age = std::time::Duration::from_secs(60);
    })
    .await;
    app.set_phone(&app.token("old"), "+41710000000").await;
    assert_eq!(deliver(&app).await, [Delivery::Retrying]);
    app.advance(61_000);
    assert_eq!(deliver(&app).await, [Delivery::Parked]);
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .starts_with("gave up after 2 attempts"),
        "{row:?}"
    );
    app.stop().await;
    provider.verify().await;
}

/// Before: one message at a time, so a provider call that hung until its timeout held up every
/// other user's code. Now each delivery holds only its own slot (`outbox.concurrency`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_provider_call_does_not_hold_up_the_other_messages() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("+41710000099"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| {
        http_provider(s, &provider);
        s.sms.timeout = Duration::from_secs(10);
        s.outbox.worker = true;
    })
    .await;
    app.set_phone(&app.token("slow"), "+41710000099").await;
    // The slow call is under way before the others are even set.
    for _ in 0..100 {
        if !provider.received_requests().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    for i in 0..5 {
        let user = format!("fast-{i}");
        app.set_phone(&app.token(&user), &format!("+4171000001{i}"))
            .await;
    }
    for i in 0..5 {
        app.wait_for_code_sent(&format!("fast-{i}"), 1).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the fast messages waited for the slow one: {:?}",
        started.elapsed()
    );
    assert!(
        !app.events("slow")
            .await
            .iter()
            .any(|e| e.event_type == "user.human.phone.code.sent"),
        "the slow message is still in flight"
    );
    app.wait_for_code_sent("slow", 1).await;
    app.stop().await;
}

/// The running worker (not the step-by-step one): messages that come due together and whose
/// codes were replaced meanwhile are dropped before any is sent, and only the current code
/// goes out.
#[tokio::test]
async fn the_running_worker_drops_replaced_codes_that_come_due_together() {
    let provider = MockServer::start().await;
    // Both first attempts fail, so both messages wait for their retry together.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("+41710000001"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| {
        http_provider(s, &provider);
        s.outbox.worker = true;
        s.outbox.poll_interval = Duration::from_millis(50);
    })
    .await;
    let t = app.token("quick-changer");
    // After each failed attempt, a moment for the worker to settle it (a retry).
    let settled = Duration::from_millis(100);
    app.set_phone(&t, "+41710000000").await;
    wait_for_requests(&provider, 1).await;
    tokio::time::sleep(settled).await;
    app.set_phone(&t, "+41710000001").await;
    wait_for_requests(&provider, 2).await;
    tokio::time::sleep(settled).await;
    // Past both first backoffs (1 s ± 25 %), well within the code's lifetime: the next
    // claim takes both messages at once.
    app.advance(10_000);
    app.wait_for_code_sent("quick-changer", 1).await;
    let mut statuses = app.outbox_statuses().await;
    statuses.sort();
    assert_eq!(statuses, ["delivered", "dropped"]);
    app.stop().await;
    provider.verify().await;
}
