//! Verify mode with wiremock as Twilio Verify: request shapes, the flow, each Twilio answer
//! and what the user sees for it, faults, and races.
use std::time::Duration;

use phoneproof::config::{Settings, SmsProvider, TwilioVerifySettings};
use phoneproof::outbox::Delivery;
use serde_json::{Value, json};
use wiremock::matchers::{basic_auth, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const SERVICE: &str = "VAservice0001";
const START: &str = "/v2/Services/VAservice0001/Verifications";
const TOKEN: &str = "twilio-verify-secret";
const PHONE: &str = "+41710000000";

fn verify_mode(s: &mut Settings, twilio: &str) {
    s.sms.provider = SmsProvider::TwilioVerify(TwilioVerifySettings {
        base_url: twilio.parse().expect("a URL"),
        account_sid: "AC123".into(),
        auth_token: TOKEN.into(),
        service_sid: SERVICE.into(),
    });
    s.sms.timeout = Duration::from_secs(1);
    // Tests drive the worker step by step.
    s.outbox.worker = false;
}

async fn spawn_verify_mode(twilio: &MockServer) -> TestApp {
    spawn_app_with(|s| verify_mode(s, &twilio.uri())).await
}

async fn deliver(app: &TestApp) -> Vec<Delivery> {
    app.worker.deliver_next().await.expect("worker step")
}

fn started(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "pending", "to": PHONE}))
}

fn twilio_error(http: u16, code: i64) -> ResponseTemplate {
    ResponseTemplate::new(http)
        .set_body_json(json!({"code": code, "message": "from Twilio", "status": http}))
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn requests_to(twilio: &MockServer, endpoint: &str) -> Vec<wiremock::Request> {
    twilio
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == endpoint)
        .collect()
}

async fn types(app: &TestApp, user: &str) -> Vec<String> {
    app.events(user)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

fn count(types: &[String], name: &str) -> usize {
    types.iter().filter(|t| *t == name).count()
}

#[tokio::test]
async fn twilio_verify_start_gets_to_and_channel_with_basic_auth_and_no_code_of_ours() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(START))
        .and(basic_auth("AC123", TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(started("VE0123"))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vstart");
    assert_eq!(app.set_phone(&t, "+41 71 000 00 00").await.status, 200);
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);

    let req = &requests_to(&twilio, START).await[0];
    // No Locale: no language is recorded with codes yet, so Twilio picks one by country.
    assert_eq!(
        form(&req.body),
        [
            ("To".into(), PHONE.into()),
            ("Channel".into(), "sms".into())
        ]
    );
    let events = app.events("vstart").await;
    let added = events
        .iter()
        .find(|e| e.event_type == "user.human.phone.code.added")
        .unwrap();
    let added: Value = serde_json::from_str(&added.payload).unwrap();
    assert_eq!(added["generatorId"], "twilio_verify", "{added}");
    assert!(
        added.get("codeHash").is_none(),
        "no code is made here: {added}"
    );
    let sent = events
        .iter()
        .find(|e| e.event_type == "user.human.phone.code.sent")
        .expect("code.sent recorded");
    let sent: Value = serde_json::from_str(&sent.payload).unwrap();
    assert_eq!(sent["generatorInfo"]["verificationId"], "VE0123");
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert_eq!(row.status, "delivered");
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_start_sends_the_recorded_language_as_locale() {
    // No code records a language yet (the localisation work fills it); the client passes
    // whatever the outbox message carries.
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(START))
        .and(basic_auth("AC123", TOKEN))
        .respond_with(started("VE9"))
        .expect(1)
        .mount(&twilio)
        .await;
    let mut settings = Settings::default();
    verify_mode(&mut settings, &twilio.uri());
    let SmsProvider::TwilioVerify(v) = &settings.sms.provider else {
        unreachable!()
    };
    let client = phoneproof::sms::verify::TwilioVerify::new(
        v,
        phoneproof::sms::http_client(Duration::from_secs(1)),
    );
    let msg = phoneproof::sms::SmsMessage {
        to: PHONE.into(),
        text: String::new(),
        code: String::new(),
        event_type: "user.human.phone.code.added".into(),
        language: Some("de".into()),
    };
    assert_eq!(client.start(&msg).await, Ok(Some("VE9".into())));
    let req = &twilio.received_requests().await.unwrap()[0];
    assert_eq!(
        form(&req.body),
        [
            ("To".into(), PHONE.into()),
            ("Channel".into(), "sms".into()),
            ("Locale".into(), "de".into())
        ]
    );
    twilio.verify().await;
}

/// Each answer Twilio can give a check, and what the user sees for it.
#[tokio::test]
async fn twilio_verify_send_500_then_201_is_retried_and_recorded_once() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(started("VE2"))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vretry");
    app.set_phone(&t, PHONE).await;
    assert_eq!(deliver(&app).await, [Delivery::Retrying]);
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert!(
        row.last_error.as_deref().unwrap().contains("500"),
        "{row:?}"
    );
    app.advance(2_000);
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);
    app.advance(60_000);
    assert!(deliver(&app).await.is_empty(), "delivered once");
    assert_eq!(
        count(&types(&app, "vretry").await, "user.human.phone.code.sent"),
        1
    );
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_60203_and_60410_park_the_message_with_twilios_code() {
    for (http, code) in [(429, 60203), (403, 60410), (400, 60200)] {
        let twilio = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(START))
            .respond_with(twilio_error(http, code))
            .expect(1)
            .mount(&twilio)
            .await;
        let app = spawn_verify_mode(&twilio).await;
        let t = app.token("vpark");
        assert_eq!(app.set_phone(&t, PHONE).await.status, 200);
        assert_eq!(deliver(&app).await, [Delivery::Parked], "{code}");
        app.advance(3_600_000);
        assert!(deliver(&app).await.is_empty(), "{code}: never retried");
        let row = &app.state.service.store().outbox().await.unwrap()[0];
        assert_eq!(row.status, "parked");
        let error = row.last_error.as_deref().unwrap();
        assert!(error.contains(&format!("Twilio error {code}")), "{error}");
        assert!(!error.contains(TOKEN) && !error.contains(PHONE), "{error}");
        assert_eq!(
            count(&types(&app, "vpark").await, "user.human.phone.code.sent"),
            0
        );
        app.stop().await;
        twilio.verify().await;
    }
}

#[tokio::test]
async fn twilio_verify_resend_keeps_the_throttles_and_starts_again() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(started("VE1"))
        .expect(2)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vresend");
    app.set_phone(&t, PHONE).await;
    deliver(&app).await;
    let early = app.resend(&t).await;
    assert_eq!(early.status, 429, "{}", early.body);
    assert_eq!(early.detail_id(), Some("PHONEPROOF-thr0t"));
    app.advance(30_000);
    assert_eq!(app.resend(&t).await.status, 200);
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);
    assert_eq!(
        count(&types(&app, "vresend").await, "user.human.phone.code.added"),
        2
    );
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_a_replaced_codes_message_is_dropped() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(START))
        .and(body_string_contains("To=%2B41710000002"))
        .respond_with(started("VE2"))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vreplaced");
    app.set_phone(&t, PHONE).await;
    app.set_phone(&t, "+41710000002").await;
    let mut outcomes = deliver(&app).await;
    outcomes.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(outcomes, [Delivery::Delivered, Delivery::Dropped]);
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_a_message_queued_in_local_mode_is_parked_not_sent() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(started("VE1"))
        .expect(0)
        .mount(&twilio)
        .await;
    // Queued by a process without Verify mode, delivered by one with it.
    let local = spawn_app_with(|s| s.outbox.worker = false).await;
    let database_url = local.database_url.clone();
    local.set_phone(&local.token("vswitch"), PHONE).await;
    let dir = local.stop().await;
    let mut settings = test_settings(&dir);
    if on_postgres() {
        settings.database = phoneproof::config::Database::postgres(database_url);
    }
    verify_mode(&mut settings, &twilio.uri());
    let app = spawn_app_in(dir, settings).await;
    assert_eq!(deliver(&app).await, [Delivery::Parked]);
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("another SMS mode"),
        "{row:?}"
    );
    app.stop().await;
    twilio.verify().await;
}
