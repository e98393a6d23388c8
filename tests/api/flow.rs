use crate::helpers::*;

fn is_rfc3339_utc_millis(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z') && s.len() == 24
}

#[tokio::test]
async fn a_user_sets_verifies_changes_resends_and_removes_a_phone() {
    let app = spawn_app().await;
    let t = app.token("user-1");

    // Nothing yet: 200 with an empty phone and only the resource owner.
    let got = app.get_phone(&t).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body,
        serde_json::json!({"details": {"resourceOwner": ORG}, "phone": {}})
    );

    let set = app.set_phone(&t, "+41 71 000 00 00").await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["details"]["sequence"], "2", "changed + code.added");
    assert_eq!(set.body["details"]["resourceOwner"], ORG);
    assert!(is_rfc3339_utc_millis(
        set.body["details"]["changeDate"].as_str().unwrap()
    ));
    assert!(set.body["details"].get("creationDate").is_none());

    let code = app.wait_for_code("+41710000000", 1).await;
    app.wait_for_code_sent("user-1", 1).await;
    let msg = &app.sms_messages()[0];
    assert_eq!(
        msg["text"],
        format!(
            "A new phone number has been added. Please use the following code to verify it {code}"
        )
    );
    assert_eq!(code.len(), 6);

    let verified = app.verify(&t, &code).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    let seq_after_verify = verified.sequence();

    let got = app.get_phone(&t).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body["phone"],
        serde_json::json!({"phone": "+41710000000", "isPhoneVerified": true})
    );
    assert_eq!(got.sequence(), seq_after_verify);
    let created = got.body["details"]["creationDate"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(is_rfc3339_utc_millis(&created));
    assert_eq!(created, set.body["details"]["changeDate"].as_str().unwrap());

    // Another number: unverified at once, with a new code.
    let set2 = app.set_phone(&t, "+41 79 123 45 67").await;
    assert_eq!(set2.status, 200, "{}", set2.body);
    let got = app.get_phone(&t).await;
    assert_eq!(
        got.body["phone"],
        serde_json::json!({"phone": "+41791234567"}),
        "isPhoneVerified false is omitted"
    );
    app.wait_for_code("+41791234567", 1).await;
    app.wait_for_code_sent("user-1", 2).await;

    app.advance(31_000);
    let resent = app.resend(&t).await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert!(resent.sequence() > set2.sequence());
    let second = app.wait_for_code("+41791234567", 2).await;
    app.wait_for_code_sent("user-1", 3).await;
    assert_eq!(app.verify(&t, &second).await.status, 200);

    let removed = app.remove(&t).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let got = app.get_phone(&t).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["phone"], serde_json::json!({}));
    assert_eq!(got.sequence(), removed.sequence());
    assert_eq!(got.body["details"]["creationDate"], created.as_str());

    // The log is the contract's event names, gapless from 1.
    let events = app.events("user-1").await;
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        &types[..2],
        ["user.human.phone.changed", "user.human.phone.code.added"]
    );
    assert!(types.contains(&"user.human.phone.code.sent"));
    assert!(types.contains(&"user.human.phone.verified"));
    assert_eq!(types.last(), Some(&"user.human.phone.removed"));
    assert_eq!(events[0].payload, r#"{"phone":"+41710000000"}"#);
    app.stop().await;
}

#[tokio::test]
async fn codes_are_stored_only_as_keyed_hashes_and_the_outbox_is_encrypted() {
    let app = spawn_app().await;
    let t = app.token("user-secret");
    assert_eq!(app.set_phone(&t, "+41710000000").await.status, 200);
    let code = app.wait_for_code("+41710000000", 1).await;
    let tables = app.table_text().await;
    assert!(
        tables.contains("+41710000000") && !tables.contains(&code),
        "{tables}"
    );
    if on_postgres() {
        return;
    }
    let dir = app.stop().await;
    let mut seen = 0;
    for name in ["phoneproof.db", "phoneproof.db-wal"] {
        let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
        seen += bytes.len();
        assert!(
            !bytes.windows(code.len()).any(|w| w == code.as_bytes()),
            "plain code found in {name}"
        );
    }
    assert!(seen > 0, "the database files exist");
}

#[tokio::test]
async fn each_user_sees_only_their_own_phone() {
    let app = spawn_app().await;
    let (a, b) = (app.token("alice"), app.token("bob"));
    assert_eq!(app.set_phone(&a, "+41710000000").await.status, 200);
    let got = app.get_phone(&b).await;
    assert_eq!(got.body["phone"], serde_json::json!({}));
    assert!(got.body["details"].get("sequence").is_none());
    app.stop().await;
}
