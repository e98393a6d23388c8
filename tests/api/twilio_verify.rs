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
const CHECK: &str = "/v2/Services/VAservice0001/VerificationCheck";
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

fn checked(status: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"sid": "VE1", "status": status}))
}

fn twilio_error(http: u16, code: i64) -> ResponseTemplate {
    ResponseTemplate::new(http)
        .set_body_json(json!({"code": code, "message": "from Twilio", "status": http}))
}

async fn mount_start(twilio: &MockServer, sid: &str) {
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(started(sid))
        .mount(twilio)
        .await;
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
async fn twilio_verify_start_gets_to_channel_and_locale_with_basic_auth_and_no_code_of_ours() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(START))
        .and(basic_auth("AC123", TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(started("VE0123"))
        .expect(2)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vstart");
    assert_eq!(app.set_phone(&t, "+41 71 000 00 00").await.status, 200);
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);

    let req = &requests_to(&twilio, START).await[0];
    // The language recorded with the code: the default one when the request named none.
    assert_eq!(
        form(&req.body),
        [
            ("To".into(), PHONE.into()),
            ("Channel".into(), "sms".into()),
            ("Locale".into(), "en".into())
        ]
    );
    // A Set in French asks Twilio for a French SMS.
    let french = app
        .client
        .put(format!("{}/auth/v1/users/me/phone", app.address))
        .bearer_auth(app.token("vstart-fr"))
        .header("accept-language", "fr-CH, de;q=0.5")
        .json(&json!({"phone": PHONE}))
        .send()
        .await
        .unwrap();
    assert_eq!(french.status(), 200);
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);
    let req = &requests_to(&twilio, START).await[1];
    assert!(
        form(&req.body).contains(&("Locale".into(), "fr".into())),
        "{:?}",
        form(&req.body)
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
        template: None,
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

#[tokio::test]
async fn twilio_verify_flow_set_send_verify_approved_then_get_shows_verified() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(started("VE1"))
        .expect(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .and(basic_auth("AC123", TOKEN))
        .respond_with(checked("approved"))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vflow");
    app.set_phone(&t, PHONE).await;
    assert_eq!(deliver(&app).await, [Delivery::Delivered]);

    let ok = app.verify(&t, "123456").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let check = &requests_to(&twilio, CHECK).await[0];
    assert_eq!(
        form(&check.body),
        [
            ("Code".into(), "123456".into()),
            ("VerificationSid".into(), "VE1".into())
        ]
    );
    let got = app.get_phone(&t).await;
    assert_eq!(
        got.body["phone"],
        json!({"phone": PHONE, "isPhoneVerified": true})
    );
    assert_eq!(ok.sequence(), got.sequence());
    assert_eq!(
        types(&app, "vflow").await,
        [
            "user.human.phone.changed",
            "user.human.phone.code.added",
            "user.human.phone.code.sent",
            "user.human.phone.verified"
        ]
    );
    // Verified already: as local mode (COMMAND-Rsj8c), and Twilio is not asked again.
    let again = app.verify(&t, "123456").await;
    assert_error(&again, 404, 5, "COMMAND-Rsj8c", "Code not found");
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_wrong_code_is_sm0cs_and_a_failed_event() {
    let twilio = MockServer::start().await;
    mount_start(&twilio, "VE1").await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(checked("pending"))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vwrong");
    app.set_phone(&t, PHONE).await;
    deliver(&app).await;
    let wrong = app.verify(&t, "000000").await;
    assert_error(&wrong, 400, 3, "COMMAND-sM0cs", "Code is invalid");
    let all = types(&app, "vwrong").await;
    assert_eq!(
        count(&all, "user.human.phone.verification.failed"),
        1,
        "{all:?}"
    );
    assert_eq!(
        app.get_phone(&t).await.body["phone"],
        json!({"phone": PHONE})
    );
    app.stop().await;
    twilio.verify().await;
}

/// Each answer Twilio can give a check, and what the user sees for it.
#[tokio::test]
async fn twilio_verify_each_check_answer_maps_to_its_user_answer() {
    // (Twilio's answer, the answer to the user, whether verification.failed is written)
    let rows: [(&str, ResponseTemplate, u16, &str, bool); 12] = [
        (
            "pending (wrong code)",
            checked("pending"),
            400,
            "COMMAND-sM0cs",
            true,
        ),
        ("expired", checked("expired"), 400, "COMMAND-sM0cs", true),
        ("canceled", checked("canceled"), 400, "COMMAND-sM0cs", true),
        (
            "404 / 20404",
            twilio_error(404, 20404),
            400,
            "COMMAND-sM0cs",
            true,
        ),
        (
            "400 / 60200",
            twilio_error(400, 60200),
            400,
            "COMMAND-sM0cs",
            true,
        ),
        (
            "429 / 60202",
            twilio_error(429, 60202),
            429,
            "PHONEPROOF-atmp5",
            false,
        ),
        (
            "max_attempts_reached",
            checked("max_attempts_reached"),
            429,
            "PHONEPROOF-atmp5",
            false,
        ),
        (
            "429 / 20429",
            twilio_error(429, 20429),
            503,
            "PHONEPROOF-unav1",
            false,
        ),
        (
            "500",
            ResponseTemplate::new(500),
            503,
            "PHONEPROOF-unav1",
            false,
        ),
        (
            "503",
            ResponseTemplate::new(503),
            503,
            "PHONEPROOF-unav1",
            false,
        ),
        (
            "timeout",
            checked("approved").set_delay(Duration::from_millis(1_500)),
            503,
            "PHONEPROOF-unav1",
            false,
        ),
        (
            "401 / 20003 (our credentials)",
            twilio_error(401, 20003),
            500,
            "PHONEPROOF-intl1",
            false,
        ),
    ];
    for (i, (name, answer, http, id, failed_event)) in rows.into_iter().enumerate() {
        let twilio = MockServer::start().await;
        mount_start(&twilio, "VE1").await;
        Mock::given(method("POST"))
            .and(path(CHECK))
            .respond_with(answer)
            .expect(1)
            .mount(&twilio)
            .await;
        let app = spawn_verify_mode(&twilio).await;
        let user = format!("vrow{i}");
        let t = app.token(&user);
        app.set_phone(&t, PHONE).await;
        deliver(&app).await;
        let a = app.verify(&t, "123456").await;
        assert_eq!(a.status.as_u16(), http, "{}: {}", name, a.body);
        assert_eq!(a.detail_id(), Some(id), "{}: {}", name, a.body);
        if http == 503 {
            assert!(a.headers.contains_key("retry-after"), "{}", name);
        }
        let all = types(&app, &user).await;
        assert_eq!(
            count(&all, "user.human.phone.verification.failed"),
            usize::from(failed_event),
            "{}: {all:?}",
            name
        );
        assert!(
            !all.contains(&"user.human.phone.verified".to_owned()),
            "{}",
            name
        );
        let body = a.body.to_string();
        assert!(
            !body.contains("Twilio") && !body.contains("123456"),
            "{}: {body}",
            name
        );
        app.stop().await;
        twilio.verify().await;
    }
}

#[tokio::test]
async fn twilio_verify_down_answers_503_and_counts_no_attempt() {
    let twilio = MockServer::start().await;
    mount_start(&twilio, "VE1").await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(6)
        .expect(6)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(checked("approved"))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vdown");
    app.set_phone(&t, PHONE).await;
    deliver(&app).await;
    // More outage answers than the attempt cap (5): none of them may use it up.
    for _ in 0..6 {
        let a = app.verify(&t, "123456").await;
        assert_error(
            &a,
            503,
            14,
            "PHONEPROOF-unav1",
            "Service temporarily unavailable; retry later",
        );
        assert_eq!(a.headers["retry-after"], "1");
    }
    let state = app
        .state
        .service
        .get(&phoneproof::domain::UserId::parse("vdown").unwrap())
        .await
        .unwrap();
    assert_eq!(state.code.as_ref().unwrap().failed_attempts, 0);
    assert_eq!(
        count(
            &types(&app, "vdown").await,
            "user.human.phone.verification.failed"
        ),
        0
    );
    // Once Twilio is back, the same code works.
    assert_eq!(app.verify(&t, "123456").await.status, 200);
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_unreachable_answers_503() {
    // Nothing listens there: the connection is refused.
    let closed = format!("http://127.0.0.1:{}", crate::binary::free_port());
    let app = spawn_app_with(|s| verify_mode(s, &closed)).await;
    let t = app.token("vgone");
    app.set_phone(&t, PHONE).await;
    let a = app.verify(&t, "123456").await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.detail_id(), Some("PHONEPROOF-unav1"));
    assert_eq!(
        count(
            &types(&app, "vgone").await,
            "user.human.phone.verification.failed"
        ),
        0
    );
    // The send fails the same way and is retried, not parked.
    assert_eq!(deliver(&app).await, [Delivery::Retrying]);
    app.stop().await;
}

#[tokio::test]
async fn twilio_verify_60202_is_the_attempt_cap_answer() {
    let twilio = MockServer::start().await;
    mount_start(&twilio, "VE1").await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(twilio_error(429, 60202))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("v60202");
    app.set_phone(&t, PHONE).await;
    deliver(&app).await;
    let a = app.verify(&t, "123456").await;
    assert_error(
        &a,
        429,
        8,
        "PHONEPROOF-atmp5",
        "Too many wrong codes; request a new code",
    );
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_our_attempt_cap_holds_without_asking_twilio() {
    let twilio = MockServer::start().await;
    mount_start(&twilio, "VE1").await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(checked("pending"))
        .expect(5)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vcap");
    app.set_phone(&t, PHONE).await;
    deliver(&app).await;
    for _ in 0..5 {
        assert_eq!(
            app.verify(&t, "000000").await.detail_id(),
            Some("COMMAND-sM0cs")
        );
    }
    let capped = app.verify(&t, "123456").await;
    assert_eq!(capped.status, 429);
    assert_eq!(capped.detail_id(), Some("PHONEPROOF-atmp5"));
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_codes_outside_4_to_10_characters_are_refused_without_asking_twilio() {
    let twilio = MockServer::start().await;
    mount_start(&twilio, "VE1").await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(checked("approved"))
        .expect(0)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vshape");
    app.set_phone(&t, PHONE).await;
    deliver(&app).await;
    for code in ["1", "123", "12345678901", &"9".repeat(200)] {
        let a = app.verify(&t, code).await;
        assert_error(&a, 400, 3, "COMMAND-sM0cs", "Code is invalid");
    }
    // A wrong code like any other: recorded, and counted against the cap.
    assert_eq!(
        count(
            &types(&app, "vshape").await,
            "user.human.phone.verification.failed"
        ),
        4
    );
    app.stop().await;
    twilio.verify().await;
}

#[tokio::test]
async fn twilio_verify_before_the_send_is_recorded_checks_by_number() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .and(body_string_contains("To=%2B41710000000"))
        .respond_with(checked("approved"))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vqueued");
    app.set_phone(&t, PHONE).await;
    // The worker has not run: no verification sid is known yet.
    let a = app.verify(&t, "123456").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let check = form(&requests_to(&twilio, CHECK).await[0].body);
    assert!(
        !check.iter().any(|(k, _)| k == "VerificationSid"),
        "{check:?}"
    );
    // The queued message is dropped: the phone is verified already.
    assert_eq!(deliver(&app).await, [Delivery::Dropped]);
    app.stop().await;
    twilio.verify().await;
}

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
async fn twilio_verify_two_concurrent_right_codes_verify_once() {
    let twilio = MockServer::start().await;
    mount_start(&twilio, "VE1").await;
    // Twilio approves once; the verification is gone for the second check.
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(checked("approved"))
        .up_to_n_times(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(twilio_error(404, 20404))
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vrace");
    app.set_phone(&t, PHONE).await;
    deliver(&app).await;
    let (a, b) = tokio::join!(app.verify(&t, "123456"), app.verify(&t, "123456"));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses[0], 200, "{} / {}", a.body, b.body);
    let loser = if a.status == 200 { &b } else { &a };
    // Whichever answer is written second: the code was used (Rsj8c) or refused (sM0cs).
    assert!(
        matches!(loser.detail_id(), Some("COMMAND-Rsj8c" | "COMMAND-sM0cs")),
        "{}",
        loser.body
    );
    assert_eq!(
        app.get_phone(&t).await.body["phone"]["isPhoneVerified"],
        true
    );
    assert_eq!(
        count(&types(&app, "vrace").await, "user.human.phone.verified"),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn twilio_verify_a_set_while_twilio_checks_keeps_the_new_number_unverified() {
    let twilio = MockServer::start().await;
    mount_start(&twilio, "VE1").await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(checked("approved").set_delay(Duration::from_millis(700)))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let t = app.token("vswap");
    app.set_phone(&t, PHONE).await;
    deliver(&app).await;
    let set_while_checking = async {
        // Once Twilio has the check in hand, the number is replaced.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while requests_to(&twilio, CHECK).await.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the check never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        app.set_phone(&t, "+41710000002").await
    };
    let (verified, set) = tokio::join!(app.verify(&t, "123456"), set_while_checking);
    assert_eq!(set.status, 200, "{}", set.body);
    // The approval was for the old number: it verifies nothing now.
    assert_error(&verified, 400, 3, "COMMAND-sM0cs", "Code is invalid");
    assert_eq!(
        app.get_phone(&t).await.body["phone"],
        json!({"phone": "+41710000002"})
    );
    let all = types(&app, "vswap").await;
    assert_eq!(count(&all, "user.human.phone.verified"), 0, "{all:?}");
    assert_eq!(
        count(&all, "user.human.phone.verification.failed"),
        0,
        "{all:?}"
    );
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

#[tokio::test]
async fn twilio_verify_over_grpc_an_outage_is_unavailable_and_60202_resource_exhausted() {
    use phoneproof::grpc::pb::zitadel::auth::v1 as pb;
    use phoneproof::grpc::pb::zitadel::auth::v1::auth_service_client::AuthServiceClient;

    let twilio = MockServer::start().await;
    mount_start(&twilio, "VE1").await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .respond_with(twilio_error(429, 60202))
        .mount(&twilio)
        .await;
    let app = spawn_verify_mode(&twilio).await;
    let token = app.token("vgrpc");
    app.set_phone(&token, PHONE).await;
    deliver(&app).await;
    let channel = tonic::transport::Channel::from_shared(app.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AuthServiceClient::new(channel);
    let verify = |code: &str| {
        let mut req = tonic::Request::new(pb::VerifyMyPhoneRequest { code: code.into() });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    };
    let down = client.verify_my_phone(verify("123456")).await.unwrap_err();
    assert_eq!(down.code(), tonic::Code::Unavailable, "{down:?}");
    let exhausted = client.verify_my_phone(verify("123456")).await.unwrap_err();
    assert_eq!(
        exhausted.code(),
        tonic::Code::ResourceExhausted,
        "{exhausted:?}"
    );
    assert!(
        exhausted.message().contains("PHONEPROOF-atmp5"),
        "{exhausted:?}"
    );
    app.stop().await;
}

/// `code.sent` events in the database at `url`, whichever engine it is.
async fn code_sent_count(url: &str) -> i64 {
    use sqlx::Connection;
    const SENT: &str =
        "SELECT COUNT(*) FROM events WHERE event_type = 'user.human.phone.code.sent'";
    if on_postgres() {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(SENT).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(SENT).fetch_one(&mut c).await.unwrap()
    }
}

/// At-least-once: a process killed after Twilio got the start but before `code.sent` was
/// written leaves the message claimed; after the lease another process starts the
/// verification again. Twilio answers a repeated start for a pending verification with the
/// same verification (and re-sends the same code), so the user may get the SMS twice but
/// holds one valid code; `code.sent` is written once.
#[tokio::test]
async fn twilio_verify_a_sigkill_between_start_and_code_sent_starts_again_after_the_lease() {
    use crate::binary::{BinaryServer, token};
    use crate::crash::wait_for_requests;

    let twilio = MockServer::start().await;
    // The first start hangs until the process is killed mid-send.
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(started("VEsame").set_delay(Duration::from_secs(4)))
        .up_to_n_times(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(START))
        .respond_with(started("VEsame"))
        .expect(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(CHECK))
        .and(body_string_contains("VerificationSid=VEsame"))
        .and(body_string_contains("Code=482913"))
        .respond_with(checked("approved"))
        .expect(1)
        .mount(&twilio)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = if on_postgres() {
        crate::postgres::fresh_database().await
    } else {
        format!("sqlite://{}", dir.path().join("phoneproof.db").display())
    };
    let env: Vec<(&str, String)> = vec![
        ("PHONEPROOF_DATABASE_URL", database_url.clone()),
        ("PHONEPROOF_DATA_DIR", dir.path().display().to_string()),
        ("PHONEPROOF_SMS_PROVIDER", "twilio".into()),
        ("PHONEPROOF_SMS_TWILIO_ACCOUNT_SID", "AC123".into()),
        ("PHONEPROOF_SMS_TWILIO_AUTH_TOKEN", TOKEN.into()),
        ("PHONEPROOF_SMS_TWILIO_VERIFY_SERVICE_SID", SERVICE.into()),
        ("PHONEPROOF_SMS_TWILIO_VERIFY_BASE_URL", twilio.uri()),
        ("PHONEPROOF_OUTBOX_POLL_INTERVAL_MS", "100".into()),
        // Killed well inside the 1 s send timeout; the lease outlives the process.
        ("PHONEPROOF_OUTBOX_LEASE_SECS", "2".into()),
        ("PHONEPROOF_SMS_TIMEOUT_SECS", "1".into()),
    ];
    let bearer = token(&env, "vkilled");
    let first = BinaryServer::start(&env).await;
    let client = reqwest::Client::new();
    let set = client
        .put(format!("{}/auth/v1/users/me/phone", first.base))
        .bearer_auth(&bearer)
        .json(&json!({"phone": "+41 71 000 00 00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    wait_for_requests(&twilio, 1).await;
    let log1 = first.kill();

    let second = BinaryServer::start(&env).await;
    wait_for_requests(&twilio, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while code_sent_count(&database_url).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "code.sent never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let verified = client
        .post(format!("{}/auth/v1/users/me/phone/_verify", second.base))
        .bearer_auth(&bearer)
        .json(&json!({"code": "482913"}))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let log2 = second.kill();

    let starts = requests_to(&twilio, START).await;
    assert_eq!(starts.len(), 2, "one interrupted start, one completed");
    assert_eq!(
        form(&starts[0].body),
        form(&starts[1].body),
        "the same start twice"
    );
    assert_eq!(code_sent_count(&database_url).await, 1);
    assert!(
        log1.contains("Twilio Verify mode"),
        "start-up says so:\n{log1}"
    );
    assert!(
        log2.contains("VEsame"),
        "the verification sid may be logged"
    );
    for log in [&log1, &log2] {
        assert!(!log.contains(TOKEN), "the auth token reached the log");
        assert!(!log.contains("482913"), "the code reached the log");
        assert!(!log.contains(PHONE), "a full number reached the log");
    }
    twilio.verify().await;
}
