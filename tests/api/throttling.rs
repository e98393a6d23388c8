//! Attempt cap, resend cooldown and the rolling send limit, with time moved by the test clock.
use crate::helpers::*;

fn retry_after(a: &Answer) -> u64 {
    a.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn past_the_attempt_cap_even_the_right_code_is_refused_until_a_resend() {
    let app = spawn_app().await;
    let t = app.token("guesser");
    app.set_phone(&t, "+41710000000").await;
    let code = app.wait_for_code("+41710000000", 1).await;
    let wrong = if code == "AAAAAA" { "BBBBBB" } else { "AAAAAA" };
    for _ in 0..5 {
        assert_eq!(
            app.verify(&t, wrong).await.detail_id(),
            Some("COMMAND-sM0cs")
        );
    }
    let a = app.verify(&t, &code).await;
    assert_error(
        &a,
        429,
        8,
        "PHONEPROOF-atmp5",
        "Too many wrong codes; request a new code",
    );
    assert!(
        !a.headers.contains_key("retry-after"),
        "waiting alone does not help"
    );
    // Before: every refused guess on a dead code still appended an event (75,509 in 10 s
    // from one token). Now the cap's five failures are recorded and nothing after them.
    let events_at_cap = app.events("guesser").await.len();
    for _ in 0..20 {
        assert_eq!(app.verify(&t, wrong).await.status, 429);
    }
    let events = app.events("guesser").await;
    assert_eq!(
        events.len(),
        events_at_cap,
        "a dead code records nothing more"
    );
    let failed = events
        .iter()
        .filter(|e| e.event_type == "user.human.phone.verification.failed")
        .count();
    assert_eq!(failed, 5, "the failures up to the cap are recorded");

    app.advance(30_000);
    assert_eq!(app.resend(&t).await.status, 200);
    let fresh = app.wait_for_code("+41710000000", 2).await;
    assert_eq!(app.verify(&t, &fresh).await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn zero_attempts_means_unlimited() {
    let app = spawn_app_with(|s| s.code.policy.max_attempts = 0).await;
    let t = app.token("patient");
    app.set_phone(&t, "+41710000000").await;
    let code = app.wait_for_code("+41710000000", 1).await;
    let wrong = if code == "AAAAAA" { "BBBBBB" } else { "AAAAAA" };
    for _ in 0..20 {
        assert_eq!(
            app.verify(&t, wrong).await.detail_id(),
            Some("COMMAND-sM0cs")
        );
    }
    assert_eq!(app.verify(&t, &code).await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_resend_within_the_cooldown_is_429_with_the_seconds_left() {
    let app = spawn_app().await;
    let t = app.token("eager");
    app.set_phone(&t, "+41710000000").await;
    let before = app.events("eager").await.len();
    let a = app.resend(&t).await;
    assert_error(
        &a,
        429,
        8,
        "PHONEPROOF-thr0t",
        "Too many codes requested; try again later",
    );
    assert_eq!(retry_after(&a), 30);
    app.advance(29_000);
    assert_eq!(retry_after(&app.resend(&t).await), 1);
    // Throttled calls wrote nothing except what the worker recorded meanwhile.
    let after: Vec<_> = app.events("eager").await.into_iter().skip(before).collect();
    assert!(
        after
            .iter()
            .all(|e| e.event_type == "user.human.phone.code.sent"),
        "{after:?}"
    );
    app.advance(1_000);
    assert_eq!(app.resend(&t).await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn at_most_five_codes_per_ten_minutes_for_set_and_resend_together() {
    let app = spawn_app().await;
    let t = app.token("pumper");
    let start = app.now_ms();
    assert_eq!(app.set_phone(&t, "+41710000000").await.status, 200);
    for _ in 0..2 {
        app.advance(30_000);
        assert_eq!(app.resend(&t).await.status, 200);
    }
    app.advance(30_000);
    assert_eq!(app.set_phone(&t, "+41710000001").await.status, 200);
    app.advance(30_000);
    assert_eq!(app.resend(&t).await.status, 200);

    app.advance(30_000);
    let a = app.set_phone(&t, "+41710000002").await;
    assert_error(
        &a,
        429,
        8,
        "PHONEPROOF-thr0t",
        "Too many codes requested; try again later",
    );
    let elapsed = (app.now_ms() - start) / 1000;
    assert_eq!(retry_after(&a), (600 - elapsed) as u64);
    assert_eq!(app.resend(&t).await.status, 429);
    // The same number is still "not changed" first: a request that would send nothing.
    assert_eq!(
        app.set_phone(&t, "+41710000001").await.detail_id(),
        Some("COMMAND-wF94r")
    );

    app.advance(retry_after(&a) as i64 * 1000);
    assert_eq!(app.set_phone(&t, "+41710000002").await.status, 200);
    app.stop().await;
}
