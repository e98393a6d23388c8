//! Every row of the error catalog, over HTTP, with status, code, message, detail id and @type.
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

const PHONE: &str = "/auth/v1/users/me/phone";

#[tokio::test]
async fn missing_header_is_401_without_details_and_with_www_authenticate() {
    let app = spawn_app().await;
    let a = app.call(Method::GET, PHONE, None, None).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.body,
        json!({"code": 16, "message": "auth header missing"})
    );
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    app.stop().await;
}

#[tokio::test]
async fn a_header_that_is_not_bearer_is_invalid_auth_header() {
    let app = spawn_app().await;
    for value in ["Basic dXNlcjpwdw==", "Bearer", "token-without-scheme"] {
        let r = app
            .client
            .get(format!("{}{PHONE}", app.address))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        let a = answer(r).await;
        assert_error(&a, 401, 16, "AUTH-toLo1", "invalid auth header");
        assert_eq!(a.headers["www-authenticate"], "Bearer");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unparseable_token_is_the_untranslated_token_invalid_key() {
    let app = spawn_app().await;
    let a = app.get_phone("not.a.jwt").await;
    assert_error(&a, 401, 16, "AUTH-7fs1e", "Errors.Token.Invalid");
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    app.stop().await;
}

#[tokio::test]
async fn a_phone_that_does_not_parse_is_phone_invalid_and_changes_nothing() {
    let app = spawn_app().await;
    let t = app.token("u");
    for raw in ["+abc", "+", "+++", "+41 71\u{0}000"] {
        let a = app.set_phone(&t, raw).await;
        assert_error(&a, 400, 3, "PHONE-so0wa", "Phone is invalid");
    }
    assert!(app.events("u").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_same_number_again_is_not_changed_verified_or_not() {
    let app = spawn_app().await;
    let t = app.token("u");
    assert_eq!(app.set_phone(&t, "+41 71 000 00 00").await.status, 200);
    let a = app.set_phone(&t, "+41710000000").await;
    assert_error(&a, 400, 9, "COMMAND-wF94r", "Phone not changed");
    // Only the worker's code.sent may have been added since the first Set.
    let commands: Vec<_> = app
        .events("u")
        .await
        .into_iter()
        .filter(|e| e.event_type != "user.human.phone.code.sent")
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        commands,
        ["user.human.phone.changed", "user.human.phone.code.added"]
    );

    let code = app.wait_for_code("+41710000000", 1).await;
    assert_eq!(app.verify(&t, &code).await.status, 200);
    let a = app.set_phone(&t, "+41 (71) 000-00-00").await;
    assert_error(&a, 400, 9, "COMMAND-wF94r", "Phone not changed");
    app.stop().await;
}

#[tokio::test]
async fn verify_without_a_pending_code_is_code_not_found() {
    let app = spawn_app().await;
    let t = app.token("u");
    // No phone at all.
    assert_error(
        &app.verify(&t, "ABC123").await,
        404,
        5,
        "COMMAND-Rsj8c",
        "Code not found",
    );
    // Already verified.
    app.set_phone(&t, "+41710000000").await;
    let code = app.wait_for_code("+41710000000", 1).await;
    assert_eq!(app.verify(&t, &code).await.status, 200);
    assert_error(
        &app.verify(&t, &code).await,
        404,
        5,
        "COMMAND-Rsj8c",
        "Code not found",
    );
    // Removed.
    let t2 = app.token("u2");
    app.set_phone(&t2, "+41710000001").await;
    app.remove(&t2).await;
    assert_error(
        &app.verify(&t2, "ABC123").await,
        404,
        5,
        "COMMAND-Rsj8c",
        "Code not found",
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_or_expired_code_is_invalid_and_recorded() {
    let app = spawn_app().await;
    let t = app.token("u");
    app.set_phone(&t, "+41710000000").await;
    let code = app.wait_for_code("+41710000000", 1).await;
    let wrong = if code == "AAAAAA" { "BBBBBB" } else { "AAAAAA" };
    assert_error(
        &app.verify(&t, wrong).await,
        400,
        3,
        "COMMAND-sM0cs",
        "Code is invalid",
    );
    // Codes compare exactly: case matters.
    assert_error(
        &app.verify(&t, &code.to_lowercase()).await,
        400,
        3,
        "COMMAND-sM0cs",
        "Code is invalid",
    );
    let failed = app
        .events("u")
        .await
        .iter()
        .filter(|e| e.event_type == "user.human.phone.verification.failed")
        .count();
    assert_eq!(failed, 2);

    app.advance(3_600_000);
    assert_error(
        &app.verify(&t, &code).await,
        400,
        3,
        "COMMAND-sM0cs",
        "Code is invalid",
    );
    app.stop().await;
}

#[tokio::test]
async fn resend_and_remove_without_a_phone_and_resend_when_verified() {
    let app = spawn_app().await;
    let t = app.token("u");
    assert_error(
        &app.resend(&t).await,
        404,
        5,
        "COMMAND-2b7Hf",
        "Phone not found",
    );
    assert_error(
        &app.remove(&t).await,
        404,
        5,
        "COMMAND-p6rsc",
        "Phone not found",
    );
    app.set_phone(&t, "+41710000000").await;
    let code = app.wait_for_code("+41710000000", 1).await;
    app.verify(&t, &code).await;
    assert_error(
        &app.resend(&t).await,
        400,
        9,
        "COMMAND-2M9sf",
        "Phone already verified",
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let app = spawn_app().await;
    let t = app.token("u");
    let a = app
        .call(Method::GET, "/auth/v1/users/me/email", Some(&t), None)
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["code"], 5);
    for (method, path, allow) in [
        (Method::PATCH, PHONE, "GET, PUT, DELETE"),
        (Method::POST, PHONE, "GET, PUT, DELETE"),
        (Method::GET, "/auth/v1/users/me/phone/_verify", "POST"),
        (
            Method::DELETE,
            "/auth/v1/users/me/phone/_resend_verification",
            "POST",
        ),
    ] {
        let a = app.call(method.clone(), path, Some(&t), None).await;
        assert_eq!(a.status, 405, "{method} {path}");
        assert_eq!(a.body, json!({"code": 12, "message": "Method Not Allowed"}));
        assert_eq!(a.headers["allow"], allow);
    }
    app.stop().await;
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_of_strings() {
    let app = spawn_app().await;
    let t = app.token("u");
    let send = |ct: Option<&'static str>, body: Vec<u8>| {
        let mut r = app
            .client
            .put(format!("{}{PHONE}", app.address))
            .bearer_auth(&t)
            .body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        async move { answer(r.send().await.unwrap()).await }
    };
    let json_ct = Some("application/json");
    for body in [
        &b"{"[..],
        b"not json",
        b"{\"phone\": 41}",
        b"[\"+41710000000\"]",
    ] {
        let a = send(json_ct, body.to_vec()).await;
        assert_eq!(a.status, 400, "{body:?}");
        assert_eq!(a.body["code"], 3);
        assert!(
            a.body["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid request body: "),
            "{}",
            a.body
        );
        assert!(a.body.get("details").is_none());
    }
    let a = send(Some("text/plain"), b"{\"phone\":\"+41710000000\"}".to_vec()).await;
    assert_eq!(a.status, 415);
    assert_eq!(a.body["code"], 3);
    let a = send(json_ct, vec![b' '; 70 * 1024]).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.body["code"], 3);
    // Unknown fields are ignored; a missing field counts as empty.
    let a = send(
        json_ct,
        br#"{"phone":"+41710000000","extra":{"x":1}}"#.to_vec(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(app.events("u").await.len() >= 2);
    app.stop().await;
}

#[tokio::test]
async fn a_storage_fault_is_unavailable_without_internals() {
    let app = spawn_app().await;
    let t = app.token("u");
    assert_eq!(app.set_phone(&t, "+41710000000").await.status, 200);
    // Take the projection away behind the service's back.
    app.sabotage("DROP TABLE phones").await;
    for a in [
        app.set_phone(&t, "+41710000001").await,
        app.get_phone(&t).await,
    ] {
        assert_error(
            &a,
            503,
            14,
            "PHONEPROOF-unav1",
            "Service temporarily unavailable; retry later",
        );
        let text = a.body.to_string().to_lowercase();
        assert!(!text.contains("phones") && !text.contains("sql"), "{text}");
        assert!(a.headers.contains_key("retry-after"));
    }
    app.stop().await;
}
