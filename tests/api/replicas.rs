//! Several `phoneproof serve` processes on one PostgreSQL (a dedicated throwaway server per
//! test): any replica answers any request alike, the outbox is shared without double sends,
//! a dead replica's claims are taken over, and losing the database is survived.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::{Connection, Row};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::binary::{BinaryServer, token};
use crate::crash::wait_for_requests;
use crate::helpers::{Answer, answer};
use crate::postgres::PgServer;

fn replica_env(
    db: &str,
    provider: &MockServer,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let dir = std::env::temp_dir().join(format!("phoneproof-replica-{}", std::process::id()));
    let mut env = vec![
        // Different data dirs would not matter: keys and state live in the database.
        ("PHONEPROOF_DATA_DIR", dir.display().to_string()),
        ("PHONEPROOF_DATABASE_URL", db.to_owned()),
        ("PHONEPROOF_SMS_PROVIDER", "http".into()),
        ("PHONEPROOF_SMS_HTTP_URL", format!("{}/sms", provider.uri())),
        ("PHONEPROOF_OUTBOX_POLL_INTERVAL_MS", "100".into()),
        ("PHONEPROOF_CODE_RESEND_COOLDOWN_SECS", "0".into()),
        ("PHONEPROOF_CODE_MAX_PER_WINDOW", "0".into()),
        // These measure replicas under load, not the anti-abuse limits (fraud.rs has theirs).
        ("PHONEPROOF_FRAUD_REGION_MAX_PER_MINUTE", "0".into()),
        ("PHONEPROOF_FRAUD_GLOBAL_MAX_PER_MINUTE", "0".into()),
        ("PHONEPROOF_LOG", "warn".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Answer {
    let mut req = client
        .request(method, format!("{base}/auth/v1/users/me/phone{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    answer(req.send().await.unwrap()).await
}

/// Codes the provider received for a number, in arrival order, by idempotency key.
async fn codes_for(provider: &MockServer, to: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in provider.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        if body["contextInfo"]["recipientPhoneNumber"] == to {
            let key = r.headers["idempotency-key"].to_str().unwrap().to_owned();
            out.push((key, body["args"]["code"].as_str().unwrap().to_owned()));
        }
    }
    out
}

async fn wait_codes(provider: &MockServer, to: &str, n: usize) -> Vec<(String, String)> {
    for _ in 0..600 {
        let codes = codes_for(provider, to).await;
        if codes.len() >= n {
            return codes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{to} never got {n} SMS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_serve_200_users_alike_and_deliver_every_message_once() {
    if !crate::postgres::available() {
        return;
    }
    let pg = PgServer::start_new();
    let db = pg.fresh_database().await;
    let provider = MockServer::start().await;
    // 200 users, two codes each (the Resend comes after the first code arrived).
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(400)
        .mount(&provider)
        .await;
    let env = replica_env(&db, &provider, &[]);
    let (a, b) = tokio::join!(BinaryServer::start(&env), BinaryServer::start(&env));
    let bases = [a.base.clone(), b.base.clone()];
    let client = reqwest::Client::new();

    let users: Vec<(String, String, String)> = (0..200)
        .map(|i| {
            let user = format!("replica-user-{i}");
            // A token from the CLI once; every replica accepts every token.
            (
                user,
                format!(
                    "+41 79 {:03} {:02} {:02}",
                    i / 10_000,
                    i / 100 % 100,
                    i % 100
                ),
                String::new(),
            )
        })
        .collect();
    let t0 = token(&env, "probe");
    for base in &bases {
        assert_eq!(
            call(&client, base, reqwest::Method::GET, "", &t0, None)
                .await
                .status,
            200
        );
    }
    let flows = users.iter().enumerate().map(|(i, (user, phone, _))| {
        let (client, bases, provider, env) = (&client, &bases, &provider, &env);
        async move {
            let t = tokio::task::block_in_place(|| token(env, user));
            let pick = |step: usize| &bases[(i * 7 + step * 3) % 2];
            let set = call(
                client,
                pick(0),
                reqwest::Method::PUT,
                "",
                &t,
                Some(json!({"phone": phone})),
            )
            .await;
            assert_eq!(set.status, 200, "{}", set.body);
            let e164 = phoneproof::domain::PhoneNumber::parse(phone)
                .unwrap()
                .to_string();
            wait_codes(provider, &e164, 1).await;
            let resent = call(
                client,
                pick(1),
                reqwest::Method::POST,
                "/_resend_verification",
                &t,
                Some(json!({})),
            )
            .await;
            assert_eq!(resent.status, 200, "{}", resent.body);
            let codes = wait_codes(provider, &e164, 2).await;
            let verified = call(
                client,
                pick(2),
                reqwest::Method::POST,
                "/_verify",
                &t,
                Some(json!({"code": codes[1].1})),
            )
            .await;
            assert_eq!(verified.status, 200, "{}", verified.body);
            t
        }
    });
    let tokens: Vec<String> = futures::stream::iter(flows)
        .buffer_unordered(50)
        .collect()
        .await;

    // Exactly once: every delivered message reached the provider once, nothing else did.
    let received = provider.received_requests().await.unwrap();
    let keys: Vec<String> = received
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "a message was sent twice");
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    let delivered: HashSet<String> =
        sqlx::query("SELECT id FROM sms_outbox WHERE status = 'delivered'")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(delivered.len(), 400);
    assert_eq!(
        distinct.into_iter().cloned().collect::<HashSet<_>>(),
        delivered
    );

    // Every user's events are gapless from 1.
    let rows = sqlx::query("SELECT aggregate_id, COUNT(*), MIN(sequence), MAX(sequence) FROM events GROUP BY aggregate_id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let streams: HashMap<String, (i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    for (user, _, _) in &users {
        let (count, min, max) = streams[user];
        assert_eq!((min, max), (1, count), "{user}: gapless");
    }
    // Both replicas report the same state.
    for t in &tokens {
        let x = call(&client, &bases[0], reqwest::Method::GET, "", t, None).await;
        let y = call(&client, &bases[1], reqwest::Method::GET, "", t, None).await;
        assert_eq!(x.body, y.body);
        assert_eq!(x.body["phone"]["isPhoneVerified"], true);
    }
    a.kill();
    b.kill();
    provider.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replicas_claims_are_delivered_by_the_other_once() {
    if !crate::postgres::available() {
        return;
    }
    let pg = PgServer::start_new();
    let db = pg.fresh_database().await;
    // Replica A's provider hangs, so A holds its claims when it is killed.
    let stuck = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&stuck)
        .await;
    let good = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(5)
        .mount(&good)
        .await;
    let lease = [
        ("PHONEPROOF_OUTBOX_LEASE_SECS", "3"),
        ("PHONEPROOF_SMS_TIMEOUT_SECS", "2"),
    ];
    let env_a = replica_env(&db, &stuck, &lease);
    let a = BinaryServer::start(&env_a).await;
    let client = reqwest::Client::new();
    for i in 0..5 {
        let t = token(&env_a, &format!("orphan-{i}"));
        let phone = format!("+4171000000{i}");
        let r = call(
            &client,
            &a.base,
            reqwest::Method::PUT,
            "",
            &t,
            Some(json!({"phone": phone})),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    wait_for_requests(&stuck, 1).await;
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    let leased: i64 = sqlx::query(
        "SELECT COUNT(*) FROM sms_outbox WHERE lease_until IS NOT NULL AND status = 'pending'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get(0);
    // A's worker is stuck sending the first message, holding its claim.
    assert!(leased >= 1, "replica A holds a claim");
    a.kill();

    let b = BinaryServer::start(&replica_env(&db, &good, &lease)).await;
    wait_for_requests(&good, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill();
    good.verify().await;
    let recipients: HashSet<String> = good
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["contextInfo"]["recipientPhoneNumber"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(recipients.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_postgresql_under_load_answers_503_and_recovers_without_a_restart() {
    if !crate::postgres::available() {
        return;
    }
    let pg = PgServer::start_new();
    let db = pg.fresh_database().await;
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&provider)
        .await;
    let env = replica_env(
        &db,
        &provider,
        &[("PHONEPROOF_DATABASE_CONNECT_TIMEOUT_SECS", "1")],
    );
    let mut server = BinaryServer::start(&env).await;
    let t = token(&env, "steady");
    let client = reqwest::Client::new();
    let base = server.base.clone();

    let load = {
        let (client, base, t) = (client.clone(), base.clone(), t.clone());
        tokio::spawn(async move {
            let mut seen: Vec<Answer> = Vec::new();
            for i in 0..100_000u32 {
                let body = json!({"phone": format!("+417100{:05}", i % 100_000)});
                seen.push(call(&client, &base, reqwest::Method::PUT, "", &t, Some(body)).await);
                if seen.len() > 50
                    && seen.iter().rev().take(20).all(|a| a.status == 200)
                    && seen.iter().any(|a| a.status == 503)
                {
                    break;
                }
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(server.alive(), "the process survives the outage");
    let ready = answer(client.get(format!("{base}/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (ready.status.as_u16(), ready.body["code"].as_i64()),
        (503, Some(14)),
        "not ready without its database"
    );
    pg.start();
    let seen = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .expect("the service recovers")
        .unwrap();
    let unavailable: Vec<&Answer> = seen.iter().filter(|a| a.status == 503).collect();
    assert!(!unavailable.is_empty(), "the outage was seen");
    for a in &unavailable {
        assert_eq!(a.body["code"], 14);
        assert_eq!(a.body["details"][0]["id"], "PHONEPROOF-unav1");
    }
    assert!(
        seen.iter()
            .all(|a| [200, 429, 503].contains(&a.status.as_u16())),
        "only 200, 429 and 503 were answered"
    );
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(server.alive());
    server.kill();
}

#[tokio::test]
async fn a_database_down_at_start_is_waited_for() {
    if !crate::postgres::available() {
        return;
    }
    let pg = PgServer::start_new();
    let db = pg.fresh_database().await;
    let provider = MockServer::start().await;
    pg.stop();
    let mut env = replica_env(
        &db,
        &provider,
        &[("PHONEPROOF_DATABASE_CONNECT_TIMEOUT_SECS", "1")],
    );
    env.retain(|(k, _)| *k != "PHONEPROOF_LOG");
    env.push(("PHONEPROOF_LOG", "warn".into()));
    let mut server = BinaryServer::spawn(&env);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(server.alive(), "it waits instead of exiting");
    assert!(
        reqwest::get(format!("{}/healthz", server.base))
            .await
            .is_err(),
        "not serving without its database"
    );
    pg.start();
    let server = server.wait_ready(Duration::from_secs(30)).await;
    let t = token(&env, "late");
    let got = call(
        &reqwest::Client::new(),
        &server.base,
        reqwest::Method::GET,
        "",
        &t,
        None,
    )
    .await;
    assert_eq!(got.status, 200);
    let log = server.kill();
    assert!(
        log.contains("PostgreSQL not reachable yet"),
        "the retries are logged:\n{log}"
    );
}

/// Bombing and pumping against two replicas on one PostgreSQL: the per-number limit and the
/// global breaker hold for the two together, not once per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_per_number_limit_and_the_global_breaker() {
    if !crate::postgres::available() {
        return;
    }
    let pg = PgServer::start_new();
    let db = pg.fresh_database().await;
    let provider = MockServer::start().await;
    // 5 codes to the victim, then 20 more until the global breaker (25 a minute) opens.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(25)
        .mount(&provider)
        .await;
    let env = replica_env(
        &db,
        &provider,
        &[("PHONEPROOF_FRAUD_GLOBAL_MAX_PER_MINUTE", "25")],
    );
    let (a, b) = tokio::join!(BinaryServer::start(&env), BinaryServer::start(&env));
    let bases = [a.base.clone(), b.base.clone()];
    let client = reqwest::Client::new();
    let tokens: Vec<String> = (0..80)
        .map(|i| token(&env, &format!("abuser-{i}")))
        .collect();
    // The breaker counts per clock minute (the per-number limit per clock hour): both bursts
    // must fall into one, so a start late in a minute waits for the next one.
    let in_minute = chrono::Utc::now().timestamp_millis().rem_euclid(60_000);
    if in_minute > 40_000 {
        tokio::time::sleep(Duration::from_millis((60_100 - in_minute) as u64)).await;
    }
    let burst = |phones: Vec<String>, tokens: &[String]| {
        let calls = phones
            .into_iter()
            .zip(tokens.to_vec())
            .enumerate()
            .map(|(i, (phone, t))| {
                let (client, base) = (&client, &bases[i % 2]);
                async move {
                    let body = json!({ "phone": phone });
                    call(client, base, reqwest::Method::PUT, "", &t, Some(body)).await
                }
            });
        futures::stream::iter(calls)
            .buffer_unordered(40)
            .collect::<Vec<Answer>>()
    };
    let ids = |answers: &[Answer]| {
        let mut ids: HashMap<String, usize> = HashMap::new();
        for a in answers {
            let id = a.body["details"][0]["id"]
                .as_str()
                .unwrap_or("ok")
                .to_owned();
            *ids.entry(id).or_default() += 1;
        }
        ids
    };
    let victim = vec!["+41 79 999 00 00".to_owned(); 40];
    let bombing = burst(victim, &tokens[..40]).await;
    assert_eq!(
        ids(&bombing),
        HashMap::from([("ok".into(), 5), ("PHONEPROOF-dest1".into(), 35)])
    );
    let numbers = (0..40).map(|i| format!("+41 79 888 {i:02} 00")).collect();
    let pumping = burst(numbers, &tokens[40..]).await;
    assert_eq!(
        ids(&pumping),
        HashMap::from([("ok".into(), 20), ("PHONEPROOF-busy1".into(), 20)])
    );
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    let queued: i64 = sqlx::query("SELECT COUNT(*) FROM sms_outbox")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 25);
    // Counters for what was sent only: the victim, the 20 pumped numbers that got a code,
    // the total; the refused requests left no rows behind.
    let counters: Vec<(String, i64)> =
        sqlx::query("SELECT counter_key, count FROM send_counters ORDER BY counter_key")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(counters.len(), 22, "{counters:?}");
    assert!(
        counters.contains(&("d:+41799990000".into(), 5)),
        "{counters:?}"
    );
    assert!(counters.contains(&("g".into(), 25)), "{counters:?}");
    crate::crash::wait_for_requests(&provider, 25).await;
    a.kill();
    b.kill();
    provider.verify().await;
}
