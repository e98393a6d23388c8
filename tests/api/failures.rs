//! Failure modes of the write path and the layers around it: each test names what went
//! wrong before and asserts the contained behaviour, on both engines where it applies.
use std::time::Duration;

use phoneproof::outbox::Delivery;

use crate::helpers::*;

const INTERNAL: (u16, i64, &str, &str) = (500, 13, "PHONEPROOF-intl1", "Internal error");

fn assert_internal(a: &Answer) {
    let (http, code, id, text) = INTERNAL;
    assert_error(a, http, code, id, text);
    let body = a.body.to_string().to_lowercase();
    for leak in ["sql", "trigger", "events", "phones", "panic", "fault"] {
        assert!(!body.contains(leak), "{leak} in {body}");
    }
}

/// A trigger that refuses the events of one user, as a constraint would.
async fn refuse_events_of(app: &TestApp) {
    if on_postgres() {
        app.sabotage(
            "CREATE FUNCTION refuse_bad() RETURNS trigger AS $$ BEGIN
               IF NEW.aggregate_id = 'bad-writer' THEN RAISE EXCEPTION 'refused by test trigger'; END IF;
               RETURN NEW; END $$ LANGUAGE plpgsql",
        )
        .await;
        app.sabotage(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_bad()",
        )
        .await;
    } else {
        app.sabotage(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON events WHEN NEW.aggregate_id = 'bad-writer'
             BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END",
        )
        .await;
    }
}

/// Holds SQLite's write lock from outside the service while `during` runs, so every write
/// queues up and the next batch holds them all.
async fn with_write_lock_held<F: std::future::Future>(app: &TestApp, during: F) -> F::Output {
    let mut c = app.hold_sqlite_write_lock().await;
    let release = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        sqlx::query("COMMIT").execute(&mut c).await.unwrap();
    };
    let (out, ()) = tokio::join!(during, release);
    out
}

/// Before: one command's error rolled back the whole SQLite group commit (up to 256 other
/// users' requests answered 503). Now a damaged state or a refused write fails only its own
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_failing_command_fails_only_itself_in_a_batch() {
    let app = spawn_app().await;
    let damaged = app.token("damaged-state");
    assert_eq!(app.set_phone(&damaged, "+41710000000").await.status, 200);
    // Its delivery's write (`code.sent`) comes first: on PostgreSQL a batch holds no lock
    // between its read and its write, and would write the projection over the damage.
    app.wait_for_code_sent("damaged-state", 1).await;
    app.sabotage(
        "UPDATE phones SET state = '{\"v\":1,\"phone\":17}' WHERE user_id = 'damaged-state'",
    )
    .await;
    refuse_events_of(&app).await;
    let bad = app.token("bad-writer");
    let tokens: Vec<String> = (0..30).map(|i| app.token(&format!("good-{i}"))).collect();
    let run = async {
        let good = futures::future::join_all(tokens.iter().enumerate().map(|(i, t)| {
            // A number each: one number gets only so many codes an hour, whoever asks.
            app.set_phone_owned(t.clone(), format!("+417100001{i:02}"))
        }));
        tokio::join!(
            good,
            app.set_phone(&bad, "+41710000003"),
            app.set_phone(&damaged, "+41710000004")
        )
    };
    let (good, bad_answer, damaged_answer) = if on_postgres() {
        run.await
    } else {
        with_write_lock_held(&app, run).await
    };
    for (i, a) in good.iter().enumerate() {
        assert_eq!(a.status, 200, "good-{i}: {}", a.body);
        assert_eq!(a.sequence(), 2);
    }
    assert_internal(&bad_answer);
    assert_internal(&damaged_answer);
    assert!(app.events("bad-writer").await.is_empty());
    let written: Vec<String> = app
        .events("good-7")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .filter(|t| t != "user.human.phone.code.sent") // the worker may have delivered
        .collect();
    assert_eq!(written.len(), 2, "{written:?}");
    app.stop().await;
}

/// Before: a constraint failure or damaged stored data was "unavailable, retry later" (503),
/// which retries can never fix. Now it is 500 INTERNAL, the cause logged, nothing of SQL in
/// the body; a missing table stays 503 (`a_storage_fault_is_unavailable_without_internals`).
#[tokio::test]
async fn data_faults_are_internal_errors_not_unavailable() {
    let app = spawn_app().await;
    refuse_events_of(&app).await;
    let a = app
        .set_phone(&app.token("bad-writer"), "+41710000000")
        .await;
    assert_internal(&a);
    assert!(!a.headers.contains_key("retry-after"));

    let t = app.token("damaged-state");
    assert_eq!(app.set_phone(&t, "+41710000000").await.status, 200);
    app.wait_for_code_sent("damaged-state", 1).await; // as above
    app.sabotage("UPDATE phones SET state = 'not json' WHERE user_id = 'damaged-state'")
        .await;
    assert_internal(&app.get_phone(&t).await);
    assert_internal(&app.verify(&t, "ABC123").await);
    app.stop().await;
}

/// Before: a panic anywhere in the SQLite writer task killed it for good: every later write
/// was 503 while /readyz said ready. Now the panic fails only its command (500), and the
/// writer goes on with a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_in_the_write_path_fails_one_command_and_writes_go_on() {
    let app = spawn_app().await;
    let faulty = app.token("fault-panic-writer");
    let tokens: Vec<String> = (0..10).map(|i| app.token(&format!("next-{i}"))).collect();
    let run = async {
        tokio::join!(
            app.set_phone(&faulty, "+41710000000"),
            futures::future::join_all(
                tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| app.set_phone_owned(t.clone(), format!("+417100001{i:02}")))
            )
        )
    };
    let (faulty_answer, others) = if on_postgres() {
        run.await
    } else {
        with_write_lock_held(&app, run).await
    };
    assert_internal(&faulty_answer);
    for a in &others {
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // And after it: writes, reads and readiness all work.
    let later = app.token("later");
    assert_eq!(app.set_phone(&later, "+41710000002").await.status, 200);
    assert_eq!(
        app.get_phone(&later).await.body["phone"]["phone"],
        "+41710000002"
    );
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

/// Before: a panic in a handler dropped the connection. Now it is a 500 in the contract's
/// shape.
#[tokio::test]
async fn a_panic_in_a_handler_answers_500_in_the_contract_shape() {
    let app = spawn_app().await;
    let a = app
        .set_phone(&app.token("fault-panic-service"), "+41710000000")
        .await;
    assert_internal(&a);
    // The server is still there.
    assert_eq!(app.get_phone(&app.token("u")).await.status, 200);
    app.stop().await;
}

/// Before: /readyz only pinged a read connection, so a write path that could not write said
/// ready. Now a write transaction must start and commit within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_fails_while_writes_cannot_commit() {
    if on_postgres() {
        return; // SQLite's write lock is what is held here; PostgreSQL has no such lock.
    }
    let app = spawn_app().await;
    let readyz = format!("{}/readyz", app.address);
    assert_eq!(app.client.get(&readyz).send().await.unwrap().status(), 200);
    let mut c = app.hold_sqlite_write_lock().await;
    let a = answer(app.client.get(&readyz).send().await.unwrap()).await;
    assert_error(
        &a,
        503,
        14,
        "PHONEPROOF-unav1",
        "Service temporarily unavailable; retry later",
    );
    // Reads still work meanwhile: only the write path is stuck.
    assert_eq!(app.get_phone(&app.token("u")).await.status, 200);
    sqlx::query("COMMIT").execute(&mut c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Probes queued behind the lock drain; then readiness answers ready again.
    let mut ok = false;
    for _ in 0..40 {
        if app.client.get(&readyz).send().await.unwrap().status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "ready again once the lock is gone");
    app.stop().await;
}

/// Before: a row in the projection was the serde layout of `PhoneState`; renaming a field
/// would have made every read a 500. Rows now carry a format version, and rows written
/// before versioning (this literal is one, as it sits in databases today) still read.
#[tokio::test]
async fn a_projection_row_in_the_unversioned_format_still_reads_and_verifies() {
    // No background delivery: the rewritten row must stay the last write before the reads.
    let app = spawn_app_with(|s| s.outbox.worker = false).await;
    let t = app.token("legacy");
    assert_eq!(app.set_phone(&t, "+41710000009").await.status, 200);
    // The code's hash is whatever the service stored; rewrite the row around it in the
    // format of the first release (no `v`), then use the service normally.
    let state = app.table_text().await;
    let hash = state
        .split("\"hash\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a code hash in the stored state")
        .to_owned();
    let now = app.now_ms();
    let legacy = format!(
        r#"{{"phone":"+41710000000","verified":false,"code":{{"hash":"{hash}","created_at":{now},"expires_at":{},"failed_attempts":0,"sequence":2}},"sends":[{now}],"sequence":2,"created_at":{now},"changed_at":{now}}}"#,
        now + 3_600_000
    );
    app.sabotage_with(
        "UPDATE phones SET state = $1 WHERE user_id = 'legacy'",
        &legacy,
    )
    .await;
    let got = app.get_phone(&t).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["phone"]["phone"], "+41710000000");
    assert_eq!(got.sequence(), 2);
    // The worker reads the legacy row too (is the code still current?) and records the send.
    assert_eq!(
        app.worker.deliver_next().await.unwrap(),
        [Delivery::Delivered]
    );
    let code = app.wait_for_code("+41710000009", 1).await;
    let v = app.verify(&t, &code).await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(
        app.get_phone(&t).await.body["phone"]["isPhoneVerified"],
        true
    );
    // Written back in the current format.
    assert!(app.table_text().await.contains(r#"{"v":1,"#));
    app.stop().await;
}

/// Before: the worker wrote an unparsable stored owner into the `code.sent` event as
/// "unknown". Now the message is parked with the reason, and no event invents an owner.
#[tokio::test]
async fn an_unreadable_stored_owner_parks_the_message() {
    let app = spawn_app_with(|s| s.outbox.worker = false).await;
    let t = app.token("owner");
    assert_eq!(app.set_phone(&t, "+41710000000").await.status, 200);
    app.sabotage("UPDATE sms_outbox SET resource_owner = ''")
        .await;
    let done = app.worker.deliver_next().await.unwrap();
    assert_eq!(done, [Delivery::Parked]);
    let row = &app.state.service.store().outbox().await.unwrap()[0];
    assert_eq!(row.status, "parked");
    assert_eq!(
        row.last_error.as_deref(),
        Some("stored resource owner is unreadable")
    );
    assert!(!row.has_payload);
    let events = app.events("owner").await;
    assert!(
        events
            .iter()
            .all(|e| e.event_type != "user.human.phone.code.sent")
    );
    assert!(app.sms_messages().is_empty());
    app.stop().await;
}
