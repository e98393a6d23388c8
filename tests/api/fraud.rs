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
    loop {
        let done = app.worker.deliver_next().await.expect("worker step");
        if done.is_empty() {
            break;
        }
        assert!(done.iter().all(|d| *d == Delivery::Delivered), "{done:?}");
    }
    provider.verify().await;
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
