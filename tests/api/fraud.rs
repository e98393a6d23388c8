//! SMS pumping and bombing: numbers that get no codes, and the limits beyond the user's own.
//! Every refusal is checked for its answer, for nothing stored, and for nothing sent: the
//! SMS go to a wiremock provider that expects exactly the codes that were allowed.
use phoneproof::config::{Settings, SmsProvider};
use phoneproof::outbox::Delivery;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

/// A provider that accepts exactly `expected` messages (checked by `deliver_all`).
pub async fn provider_expecting(expected: u64) -> MockServer {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .respond_with(ResponseTemplate::new(200))
        .expect(expected)
        .mount(&provider)
        .await;
    provider
}

pub fn send_to(s: &mut Settings, provider: &MockServer) {
    s.sms.provider = SmsProvider::Http {
        url: format!("{}/sms", provider.uri()).parse().expect("a URL"),
        signing_key: None,
    };
    // Tests drive the worker, so every queued message is offered to the provider.
    s.outbox.worker = false;
}

/// Offers every queued message to the provider, then checks it got what it expected.
pub async fn deliver_all(app: &TestApp, provider: &MockServer) {
    deliver(app).await;
    provider.verify().await;
}

/// Offers every queued message to the provider; each must be delivered.
pub async fn deliver(app: &TestApp) {
    loop {
        let done = app.worker.deliver_next().await.expect("worker step");
        if done.is_empty() {
            break;
        }
        assert!(done.iter().all(|d| *d == Delivery::Delivered), "{done:?}");
    }
}

fn retry_after(a: &Answer) -> i64 {
    a.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

/// Seconds from `now` to the end of its fixed window of `window_ms`.
fn to_window_end(now: i64, window_ms: i64) -> i64 {
    ((window_ms - now.rem_euclid(window_ms)) as u64).div_ceil(1000) as i64
}

const HOUR_MS: i64 = 3_600_000;

/// Moves the test clock to the start of the next window of `window_ms` (which starts with
/// the real time, anywhere in a window), so a test's requests cannot straddle two windows.
fn align_to(app: &TestApp, window_ms: i64) {
    app.advance(window_ms - app.now_ms().rem_euclid(window_ms));
}

/// What a refused request must leave as it was.
#[derive(Debug, PartialEq)]
pub struct Footprint {
    phone: serde_json::Value,
    events: usize,
    outbox: usize,
}

pub async fn footprint(app: &TestApp, user: &str) -> Footprint {
    Footprint {
        phone: app.get_phone(&app.token(user)).await.body["phone"].clone(),
        events: app.events(user).await.len(),
        outbox: app.state.service.store().outbox().await.unwrap().len(),
    }
}

pub fn refusals(metrics: &str, rule: &str, region: &str) -> u64 {
    let series = format!("phoneproof_sms_refused_total{{rule=\"{rule}\",region=\"{region}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.parse().expect("a count"))
}

#[tokio::test]
async fn numbers_that_cannot_get_codes_are_refused_and_nothing_is_stored_or_sent() {
    let provider = provider_expecting(1).await;
    let app = spawn_app_with(|s| send_to(s, &provider)).await;
    let t = app.token("careful");
    assert_eq!(app.set_phone(&t, "+41 71 000 00 00").await.status, 200);
    let before = footprint(&app, "careful").await;
    let nosms = (
        400,
        3,
        "PHONEPROOF-nosms",
        "Codes cannot be sent to this phone number",
    );
    let invalid = (400, 3, "PHONE-so0wa", "Phone is invalid");
    let cases = [
        (
            "+41 75 000 000",
            invalid,
            "one digit short of a Swiss mobile",
        ),
        (
            "+882 345 678 901",
            invalid,
            "an unassigned international network",
        ),
        ("+41 900 123 456", nosms, "premium rate"),
        ("+41 840 123 456", nosms, "shared cost"),
        ("+41 74 012 34 56", nosms, "pager"),
        (
            "+881 612 345 678",
            nosms,
            "satellite: a non-geographic code",
        ),
    ];
    for (raw, (http, code, id, text), why) in cases {
        let a = app.set_phone(&t, raw).await;
        assert_error(&a, http, code, id, text);
        assert!(
            !a.headers.contains_key("retry-after"),
            "{why}: waiting does not help"
        );
        assert_eq!(
            footprint(&app, "careful").await,
            before,
            "{why}: nothing stored"
        );
    }
    let metrics = app.metrics_text().await;
    assert_eq!(refusals(&metrics, "invalid_number", "CH"), 1, "{metrics}");
    assert_eq!(refusals(&metrics, "number_type", "CH"), 3, "{metrics}");
    assert_eq!(refusals(&metrics, "region", "881"), 1, "{metrics}");
    // Only the one allowed code reaches the provider.
    deliver_all(&app, &provider).await;
    app.stop().await;
}

#[tokio::test]
async fn the_allowed_types_and_regions_are_configuration() {
    let provider = provider_expecting(2).await;
    let app = spawn_app_with(|s| {
        send_to(s, &provider);
        let d = &mut s.fraud.destinations;
        d.allowed_types
            .push(phoneproof::domain::NumberType::PremiumRate);
        d.regions.allowed.push("881".parse().unwrap());
        d.regions.denied.push("DE".parse().unwrap());
    })
    .await;
    let premium = app
        .set_phone(&app.token("premium"), "+41 900 123 456")
        .await;
    assert_eq!(premium.status, 200);
    let satellite = app
        .set_phone(&app.token("satellite"), "+881 612 345 678")
        .await;
    assert_eq!(satellite.status, 200);
    let a = app.set_phone(&app.token("berlin"), "+49 30 123456").await;
    assert_eq!(a.detail_id(), Some("PHONEPROOF-nosms"));
    deliver_all(&app, &provider).await;
    app.stop().await;
}

/// Bombing: a hundred fresh accounts aim one number at once; five codes go out an hour.
#[tokio::test]
async fn one_number_gets_at_most_five_codes_per_hour_whoever_asks() {
    // 5 to the victim in the first hour, 1 in the next, and one to keeper's own number.
    let provider = provider_expecting(7).await;
    let app = spawn_app_with(|s| send_to(s, &provider)).await;
    align_to(&app, HOUR_MS);
    let victim = "+41 79 123 45 67";
    let users: Vec<String> = (0..100).map(|i| format!("bot{i}")).collect();
    let answers = futures::future::join_all(
        users
            .iter()
            .map(|u| app.set_phone_owned(app.token(u), victim.to_owned())),
    )
    .await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(ok, 5, "five codes to one number per hour");
    let now = app.now_ms();
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_error(
            a,
            429,
            8,
            "PHONEPROOF-dest1",
            "Too many codes sent to this phone number; try again later",
        );
        assert_eq!(retry_after(a), to_window_end(now, HOUR_MS));
    }
    // The refused accounts have nothing: no phone, no event.
    let mut refused = 0;
    for (u, a) in users.iter().zip(&answers) {
        if a.status != 200 {
            assert!(app.events(u).await.is_empty(), "{u} has events");
            refused += 1;
        }
    }
    assert_eq!(refused, 95);
    deliver(&app).await;

    // Resend counts too: an account that got a code cannot ask again this hour.
    let first = users
        .iter()
        .zip(&answers)
        .find(|(_, a)| a.status == 200)
        .map(|(u, _)| u.clone())
        .unwrap();
    app.advance(30_000);
    let t = app.token(&first);
    let before = footprint(&app, &first).await;
    let a = app.resend(&t).await;
    assert_eq!(a.detail_id(), Some("PHONEPROOF-dest1"), "{}", a.body);
    assert_eq!(footprint(&app, &first).await, before);
    // A user whose phone is set keeps it when the number they switch to is refused.
    let keeper = app.token("keeper");
    assert_eq!(app.set_phone(&keeper, "+41 71 000 00 00").await.status, 200);
    deliver(&app).await;
    let kept = footprint(&app, "keeper").await;
    assert_eq!(app.set_phone(&keeper, victim).await.status, 429);
    assert_eq!(
        footprint(&app, "keeper").await,
        kept,
        "the old phone is untouched"
    );

    let metrics = app.metrics_text().await;
    assert_eq!(refusals(&metrics, "destination", "CH"), 97, "{metrics}");
    // Once the window is over, the number gets a code again.
    app.advance(retry_after(&a) * 1000);
    assert_eq!(app.resend(&t).await.status, 200);
    deliver_all(&app, &provider).await;
    app.stop().await;
}

/// Pumping across many numbers: the per-region and the global breakers.
#[tokio::test]
async fn circuit_breakers_cap_codes_per_minute_per_region_and_in_total() {
    let provider = provider_expecting(6).await;
    let app = spawn_app_with(|s| {
        send_to(s, &provider);
        s.fraud.limits.region.max = 3;
        s.fraud.limits.global.max = 5;
    })
    .await;
    align_to(&app, 60_000);
    let busy = |a: &Answer| {
        assert_error(
            a,
            429,
            8,
            "PHONEPROOF-busy1",
            "Too many codes are being sent right now; try again later",
        )
    };
    let set = |u: &str, n: &str| app.set_phone_owned(app.token(u), n.to_owned());
    for i in 0..3 {
        assert_eq!(
            set(&format!("ch{i}"), &format!("+4171000000{i}"))
                .await
                .status,
            200
        );
    }
    let now = app.now_ms();
    let a = set("ch3", "+41710000003").await;
    busy(&a);
    assert_eq!(retry_after(&a), to_window_end(now, 60_000));
    assert!(app.events("ch3").await.is_empty());
    assert_eq!(set("de0", "+4930123450").await.status, 200);
    assert_eq!(set("de1", "+4930123451").await.status, 200);
    let a = set("us0", "+14155552671").await;
    busy(&a);
    assert!(app.events("us0").await.is_empty());
    let metrics = app.metrics_text().await;
    assert_eq!(refusals(&metrics, "region_breaker", "CH"), 1, "{metrics}");
    assert_eq!(refusals(&metrics, "global_breaker", "US"), 1, "{metrics}");
    app.advance(retry_after(&a) * 1000);
    assert_eq!(set("ch3", "+41710000003").await.status, 200);
    deliver_all(&app, &provider).await;
    app.stop().await;
}

async fn set_from(app: &TestApp, user: &str, phone: &str, forwarded_for: &str) -> Answer {
    let req = app
        .client
        .put(format!("{}/auth/v1/users/me/phone", app.address))
        .bearer_auth(app.token(user))
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({ "phone": phone }));
    answer(req.send().await.unwrap()).await
}

/// Many accounts from one address; behind a trusted proxy the forwarded address counts.
#[tokio::test]
async fn codes_per_client_address_count_the_forwarded_client_behind_a_trusted_proxy() {
    let provider = provider_expecting(3).await;
    let app = spawn_app_with(|s| {
        send_to(s, &provider);
        s.fraud.limits.client.max = 2;
        s.fraud.trusted_proxies.0 = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    align_to(&app, HOUR_MS);
    let bot = "198.51.100.1";
    assert_eq!(set_from(&app, "a1", "+41710000001", bot).await.status, 200);
    assert_eq!(set_from(&app, "a2", "+41710000002", bot).await.status, 200);
    let now = app.now_ms();
    let a = set_from(&app, "a3", "+41710000003", bot).await;
    assert_error(
        &a,
        429,
        8,
        "PHONEPROOF-thr0t",
        "Too many codes requested; try again later",
    );
    assert_eq!(retry_after(&a), to_window_end(now, HOUR_MS));
    assert!(app.events("a3").await.is_empty());
    // A forged entry left of what the proxy appended changes nothing.
    let forged = format!("203.0.113.50, {bot}");
    assert_eq!(
        set_from(&app, "a4", "+41710000004", &forged).await.status,
        429
    );
    // Another client behind the same proxy has its own count.
    assert_eq!(
        set_from(&app, "b1", "+41710000005", "198.51.100.2")
            .await
            .status,
        200
    );
    let metrics = app.metrics_text().await;
    assert_eq!(refusals(&metrics, "client_address", "CH"), 2, "{metrics}");
    deliver_all(&app, &provider).await;
    app.stop().await;
}

#[tokio::test]
async fn without_trusted_proxies_forwarding_headers_are_ignored() {
    let app = spawn_app_with(|s| s.fraud.limits.client.max = 1).await;
    align_to(&app, HOUR_MS);
    assert_eq!(
        set_from(&app, "c1", "+41710000001", "198.51.100.1")
            .await
            .status,
        200
    );
    let a = set_from(&app, "c2", "+41710000002", "198.51.100.2").await;
    assert_eq!(
        a.detail_id(),
        Some("PHONEPROOF-thr0t"),
        "the peer, 127.0.0.1, counts"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_client_address_limit_is_off_by_default_and_holds_over_grpc() {
    let app = spawn_app().await;
    for i in 0..8 {
        let t = app.token(&format!("d{i}"));
        assert_eq!(
            app.set_phone(&t, &format!("+4171000001{i}")).await.status,
            200
        );
    }
    app.stop().await;

    use phoneproof::grpc::pb::zitadel::auth::v1 as pb;
    use phoneproof::grpc::pb::zitadel::auth::v1::auth_service_client::AuthServiceClient;
    let app = spawn_app_with(|s| s.fraud.limits.client.max = 1).await;
    align_to(&app, HOUR_MS);
    let channel = tonic::transport::Channel::from_shared(app.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AuthServiceClient::new(channel);
    let set = |user: &str, phone: &str| {
        let mut req = tonic::Request::new(pb::SetMyPhoneRequest {
            phone: phone.to_owned(),
        });
        let bearer = format!("Bearer {}", app.token(user)).parse().unwrap();
        req.metadata_mut().insert("authorization", bearer);
        req
    };
    assert!(client.set_my_phone(set("g1", "+41710000001")).await.is_ok());
    let refused = client
        .set_my_phone(set("g2", "+41710000002"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().ends_with("(PHONEPROOF-thr0t)"),
        "{refused:?}"
    );
    assert!(refused.metadata().get("retry-after").is_some());
    app.stop().await;
}

/// Numbers of every kind the rules tell apart: fixed line, mobile, another region, premium
/// rate, satellite, and one that cannot exist.
const NUMBERS: [&str; 8] = [
    "+41710000001",
    "+41710000002",
    "+41791234567",
    "+4930123456",
    "+14155552671",
    "+41900123456",
    "+881612345678",
    "+4175000000",
];

/// One request of a generated run: which user, Set (to which number) or Resend, from which
/// client address, after how much time.
type Op = (usize, Option<usize>, u8, i64);

/// Runs `ops` on a fresh app; returns the error ids answered.
async fn run_ops(ops: Vec<Op>) -> Vec<String> {
    let app = spawn_app_with(|s| {
        // Small limits, so a short run reaches every one of them.
        s.outbox.worker = false;
        s.code.send.resend_cooldown_ms = 0;
        let l = &mut s.fraud.limits;
        l.destination.max = 2;
        l.client.max = 3;
        l.region.max = 4;
        l.global.max = 5;
        s.fraud.trusted_proxies.0 = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    align_to(&app, HOUR_MS);
    let store = app.state.service.store().clone();
    let mut answered = Vec::new();
    for (i, (user, set, client, wait)) in ops.into_iter().enumerate() {
        app.advance(wait);
        let user = format!("p{user}");
        let outbox = store.outbox().await.unwrap().len();
        let events = app.events(&user).await.len();
        let from = format!("198.51.100.{client}");
        let a = match set {
            Some(n) => set_from(&app, &user, NUMBERS[n], &from).await,
            None => {
                let req = app
                    .client
                    .post(format!(
                        "{}{}",
                        app.address, "/auth/v1/users/me/phone/_resend_verification"
                    ))
                    .bearer_auth(app.token(&user))
                    .header("x-forwarded-for", &from)
                    .json(&serde_json::json!({}));
                answer(req.send().await.unwrap()).await
            }
        };
        let queued = store.outbox().await.unwrap().len() - outbox;
        let written = app.events(&user).await.len() - events;
        if a.status == 200 {
            assert_eq!(queued, 1, "op {i}: a code sent is one message");
        } else {
            assert!(
                a.status == 400 || a.status == 404 || a.status == 429,
                "op {i}: {}",
                a.body
            );
            assert_eq!(
                (queued, written),
                (0, 0),
                "op {i}: refused ({}) yet written",
                a.body
            );
            answered.extend(a.detail_id().map(str::to_owned));
        }
    }
    app.stop().await;
    answered
}

/// Whatever the mix of users, numbers, addresses and times: a refused request never reaches
/// the outbox (nor the event log); an accepted one queues exactly one message.
#[test]
fn no_refused_request_reaches_the_outbox() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Runtime::new().unwrap();
    // First a run that reaches each rule in turn, so the property holds on every kind of
    // refusal whatever the generated runs reach.
    let scripted = vec![
        (0, Some(0), 0, 0),
        (1, Some(0), 0, 0),
        (2, Some(0), 0, 0),
        (0, Some(5), 0, 0),
        (0, Some(7), 0, 0),
        (3, Some(1), 0, 0),
        (3, Some(2), 0, 0),
        (0, Some(3), 1, 0),
        (1, Some(4), 1, 0),
        (2, Some(2), 1, 0),
    ];
    assert_eq!(
        rt.block_on(run_ops(scripted)),
        [
            "PHONEPROOF-dest1",
            "PHONEPROOF-nosms",
            "PHONE-so0wa",
            "PHONEPROOF-thr0t",
            "PHONEPROOF-busy1"
        ]
    );
    let op = (
        0..4usize,
        proptest::option::weighted(0.8, 0..NUMBERS.len()),
        0..2u8,
        // Mostly at once, so the per-minute breakers fill; now and then a window passes.
        prop_oneof![
            6 => Just(0i64),
            1 => Just(1_000),
            1 => Just(61_000),
            1 => Just(3_600_000)
        ],
    );
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op, 1..40), |ops| {
            rt.block_on(run_ops(ops));
            Ok(())
        })
        .unwrap();
}

/// The default limits, black box: codes queued when bots pump one region and then many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_defaults_pumping_gets_120_codes_a_minute_per_region_and_600_in_all() {
    use futures::StreamExt;
    let app = spawn_app_with(|s| s.outbox.worker = false).await;
    // The clock does not move after this: every request falls into the same minute.
    align_to(&app, 60_000);
    let burst = |prefix: &str, numbers: Vec<String>| {
        let app = &app;
        let calls: Vec<_> = numbers
            .into_iter()
            .enumerate()
            .map(|(i, n)| app.set_phone_owned(app.token(&format!("{prefix}{i}")), n))
            .collect();
        futures::stream::iter(calls)
            .buffer_unordered(32)
            .collect::<Vec<Answer>>()
    };
    let tally = |answers: &[Answer]| {
        let ok = answers.iter().filter(|a| a.status == 200).count();
        let busy = answers
            .iter()
            .filter(|a| a.detail_id() == Some("PHONEPROOF-busy1"))
            .count();
        (ok, busy)
    };
    let swiss = (0..200).map(|i| format!("+41791000{i:03}")).collect();
    assert_eq!(tally(&burst("ch", swiss).await), (120, 80), "one region");
    let elsewhere: Vec<String> = (0..100)
        .flat_map(|i| {
            [
                format!("+4930123{i:03}"),
                format!("+336123456{i:02}"),
                format!("+3931234500{i:02}"),
                format!("+4366412300{i:02}"),
                format!("+141555501{i:02}"),
            ]
        })
        .collect();
    // 120 are already out this minute; 480 more fit under the global 600.
    assert_eq!(
        tally(&burst("xx", elsewhere).await),
        (480, 20),
        "all regions"
    );
    assert_eq!(app.state.service.store().outbox().await.unwrap().len(), 600);
    let metrics = app.metrics_text().await;
    assert_eq!(refusals(&metrics, "region_breaker", "CH"), 80, "{metrics}");
    app.advance(60_000);
    let t = app.token("next-minute");
    assert_eq!(app.set_phone(&t, "+41791000999").await.status, 200);
    app.stop().await;
}

/// The counters table holds only the windows still running.
#[tokio::test]
async fn counters_of_ended_windows_are_deleted() {
    let app = spawn_app_with(|s| s.outbox.worker = false).await;
    for i in 0..3 {
        let t = app.token(&format!("e{i}"));
        assert_eq!(
            app.set_phone(&t, &format!("+4171000000{i}")).await.status,
            200
        );
    }
    const ROWS: &str = "SELECT COUNT(*) FROM send_counters";
    // Three numbers, one region, the total.
    assert_eq!(app.scalar(ROWS).await, 5);
    app.advance(HOUR_MS + 60_000);
    let t = app.token("later");
    assert_eq!(app.set_phone(&t, "+41710000009").await.status, 200);
    assert_eq!(
        app.scalar(ROWS).await,
        3,
        "only the new send's windows are left"
    );
    app.stop().await;
}

/// An open circuit breaker is what an operator must hear of: an error in the log, once a
/// minute per process however many requests it refuses, and no phone number in it.
#[tokio::test]
async fn an_open_breaker_is_logged_as_an_error_once_a_minute() {
    use crate::binary::{BinaryServer, token};
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("PHONEPROOF_DATA_DIR", dir.path().display().to_string()),
        ("PHONEPROOF_FRAUD_GLOBAL_MAX_PER_MINUTE", "1".to_owned()),
        ("PHONEPROOF_LOG", "warn".to_owned()),
    ];
    let server = BinaryServer::start(&env).await;
    let tokens: Vec<String> = (0..3).map(|i| token(&env, &format!("l{i}"))).collect();
    // The breaker counts per clock minute: the three requests must fall into one.
    let in_minute = chrono::Utc::now().timestamp_millis().rem_euclid(60_000);
    if in_minute > 50_000 {
        tokio::time::sleep(std::time::Duration::from_millis(
            (60_100 - in_minute) as u64,
        ))
        .await;
    }
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let req = client
            .put(format!("{}/auth/v1/users/me/phone", server.base))
            .bearer_auth(t)
            .json(&serde_json::json!({ "phone": format!("+4171000012{i}") }));
        statuses.push(req.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 429, 429]);
    let (_, log) = server.terminate(std::time::Duration::from_secs(10)).await;
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("circuit breaker open"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("ERROR"), "{log}");
    assert!(lines[0].contains("global_breaker"), "{log}");
    assert!(!log.contains("71000012"), "a number in the log: {log}");
}
