//! The races we claim to handle.
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_sets_give_gapless_distinct_sequences() {
    let app = spawn_app_with(|s| s.code.send.max_per_window = 0).await;
    let t = app.token("racer");
    let calls = (0..10).map(|i| {
        let (app, t) = (&app, &t);
        async move { app.set_phone(t, &format!("+4171000000{i}")).await }
    });
    let answers = futures::future::join_all(calls).await;
    let mut seqs: Vec<u64> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{}", a.body);
            a.sequence()
        })
        .collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 10, "every Set got its own sequence");
    let events = app.events("racer").await;
    let all: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        all,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "gapless from 1"
    );
    let changed = events
        .iter()
        .filter(|e| e.event_type == "user.human.phone.changed")
        .count();
    assert_eq!(changed, 10);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_verifies_with_the_right_code_give_one_success() {
    let app = spawn_app().await;
    let t = app.token("double");
    app.set_phone(&t, "+41710000000").await;
    let code = app.wait_for_code("+41710000000", 1).await;
    let (a, b) = tokio::join!(app.verify(&t, &code), app.verify(&t, &code));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 404], "{} / {}", a.body, b.body);
    let loser = if a.status == 200 { &b } else { &a };
    assert_error(loser, 404, 5, "COMMAND-Rsj8c", "Code not found");
    let verified = app
        .events("double")
        .await
        .iter()
        .filter(|e| e.event_type == "user.human.phone.verified")
        .count();
    assert_eq!(verified, 1);
    app.stop().await;
}
