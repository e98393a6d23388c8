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

/// PostgreSQL batches read without locks and write in one statement: that statement must
/// fail as a conflict (the writer re-runs the batch) and write nothing when another writer
/// changed what the batch read. Here: the user's sequence, and a delivered message that was
/// dropped meanwhile. (Counters past their limit: `replicas::two_replicas_share_…`.)
#[tokio::test]
async fn a_postgresql_batch_write_fails_when_what_it_read_changed() {
    use phoneproof::store::{BatchWrites, NewEvent, OutboxSettle, StoreError};
    if !on_postgres() {
        return; // one writer on SQLite, which reads and writes in one transaction
    }
    let app = spawn_app_with(|s| s.outbox.worker = false).await;
    let store = app.state.service.store();
    let t = app.token("occ");
    assert_eq!(app.set_phone(&t, "+41710000000").await.status, 200);

    let (tx, loaded, _) = store.begin_loading(&["occ"], &[]).await.unwrap();
    let read = loaded["occ"].as_ref().unwrap().clone();
    assert_eq!(app.set_phone(&t, "+41710000001").await.status, 200);
    let stale = BatchWrites {
        events: vec![NewEvent {
            user: "occ",
            sequence: read.sequence + 1,
            event_type: "user.human.phone.removed",
            payload: "{}".into(),
            at: app.now_ms(),
            owner: "1",
        }],
        phones: vec![("occ", read.to_stored())],
        ..BatchWrites::default()
    };
    let lost = tx.write_and_commit(&stale).await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
    let events = app.events("occ").await;
    assert_eq!(events.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| e.event_type != "user.human.phone.removed")
    );
    assert_eq!(
        app.get_phone(&t).await.body["phone"]["phone"],
        "+41710000001"
    );

    let newest = store.outbox().await.unwrap().pop().unwrap().id;
    let (mut tx, _, _) = store.begin_loading(&["occ"], &[]).await.unwrap();
    let pending = tx.mark_delivered(&[&newest], app.now_ms()).await.unwrap();
    assert!(pending.contains(&newest));
    let drop = OutboxSettle::Drop {
        reason: "dropped by another writer".into(),
    };
    store.settle(&newest, &drop, app.now_ms()).await.unwrap();
    let lost = tx.write_and_commit(&BatchWrites::default()).await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
    let row = store.outbox().await.unwrap().pop().unwrap();
    assert_eq!((row.id, row.status), (newest, "dropped".to_owned()));
    app.stop().await;
}
