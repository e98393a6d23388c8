//! Open-internet hygiene: what a client or a local user can get out of the service that it
//! should not.
use phoneproof::grpc::pb::zitadel::auth::v1 as pb;
use phoneproof::grpc::pb::zitadel::auth::v1::auth_service_client::AuthServiceClient;

use crate::helpers::*;

const PHONE: &str = "/auth/v1/users/me/phone";

/// Before: GET of the phone (personal data) carried no cache directive.
#[tokio::test]
async fn phone_answers_are_not_stored_by_caches() {
    let app = spawn_app().await;
    let t = app.token("cached");
    for a in [
        app.get_phone(&t).await,
        app.set_phone(&t, "+41710000000").await,
        app.verify(&t, "NOPE12").await,
        app.resend(&t).await,
    ] {
        assert_eq!(
            a.headers.get("cache-control").map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{}",
            a.status
        );
    }
    app.stop().await;
}

/// Before: a second `Authorization` header was silently ignored.
#[tokio::test]
async fn two_authorization_headers_are_an_invalid_auth_header() {
    let app = spawn_app().await;
    let good = format!("Bearer {}", app.token("twice"));
    let resp = app
        .client
        .get(format!("{}{PHONE}", app.address))
        .header("authorization", &good)
        .header("authorization", &good)
        .send()
        .await
        .unwrap();
    assert_error(
        &answer(resp).await,
        401,
        16,
        "AUTH-7fs1e",
        "invalid auth header",
    );

    let channel = tonic::transport::Channel::from_shared(app.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut req = tonic::Request::new(pb::GetMyPhoneRequest {});
    req.metadata_mut()
        .append("authorization", good.parse().unwrap());
    req.metadata_mut()
        .append("authorization", good.parse().unwrap());
    let status = AuthServiceClient::new(channel)
        .get_my_phone(req)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "invalid auth header (AUTH-7fs1e)");
    app.stop().await;
}

/// Before: a gzip body was read as if it were plain JSON.
#[tokio::test]
async fn a_compressed_body_is_415_and_changes_nothing() {
    let app = spawn_app().await;
    let t = app.token("zipped");
    for encoding in ["gzip", "br", "identity, gzip"] {
        let resp = app
            .client
            .put(format!("{}{PHONE}", app.address))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(r#"{"phone":"+41710000000"}"#)
            .send()
            .await
            .unwrap();
        let a = answer(resp).await;
        assert_eq!(a.status, 415, "{encoding}: {}", a.body);
        assert_eq!(a.body["code"], 3);
        assert_eq!(
            a.body["message"],
            "unsupported content encoding: send the body uncompressed"
        );
    }
    assert!(app.events("zipped").await.is_empty());
    // `identity` is no encoding at all.
    let resp = app
        .client
        .put(format!("{}{PHONE}", app.address))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body(r#"{"phone":"+41710000000"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

/// Before: the data directory was created 0755 and the database 0644, so every local user
/// could read the phone numbers.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    if on_postgres() {
        return; // The data lives in PostgreSQL.
    }
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    // A file an earlier version left open to everyone is tightened too.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("notes.txt"), "old").unwrap();
    std::fs::set_permissions(
        data.join("notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut settings = test_settings(&parent);
    settings.data_dir = data.clone();
    let app = spawn_app_in(tempfile::tempdir().unwrap(), settings).await;
    app.set_phone(&app.token("private"), "+41710000000").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let files: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("phoneproof.db")),
        "{files:?}"
    );
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    app.stop().await;
}
