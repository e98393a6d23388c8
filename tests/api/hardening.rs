//! Open-internet hygiene: what a client or a local user can get out of the service that it
//! should not.
use phoneproof::grpc::pb::zitadel::auth::v1 as pb;
use phoneproof::grpc::pb::zitadel::auth::v1::auth_service_client::AuthServiceClient;

use std::time::Duration;

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
        "AUTH-toLo1",
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
    assert_eq!(status.message(), "invalid auth header (AUTH-toLo1)");
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

/// Before: no connection limit, and an `accept` failing for lack of descriptors was retried
/// in a tight loop: under `ulimit -n 1024`, 1,020 idle connects made `/healthz` time out.
/// Now connections beyond the limit wait in the backlog, idle ones are closed, and accept
/// errors back off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_beyond_the_descriptor_limit_do_not_lock_out_a_health_check() {
    use crate::binary::BinaryServer;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PHONEPROOF_DATA_DIR", dir.path().display().to_string()),
        ("PHONEPROOF_IDLE_TIMEOUT_MS", "500".to_owned()),
        ("PHONEPROOF_LOG", "warn".to_owned()),
    ];
    let mut server = BinaryServer::start_with_open_files(&env, 256).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        // Connects that never send a byte; some stay in the kernel's backlog.
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let started = std::time::Instant::now();
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("health check answered");
    assert_eq!(health.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(server.alive());
    drop(idle);
    server.kill();
}

/// Before: six kinds of stalled connection (partial request line, partial headers, partial
/// body, idle keep-alive, ...) were all still open after 95 s.
#[tokio::test]
async fn a_stalled_request_is_closed_by_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| s.idle_timeout = Duration::from_millis(300)).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    for stalled in [
        &b"GET /healthz HTTP/1.1\r\nHost: x\r\n"[..],
        b"GET /heal",
        b"PUT /auth/v1/users/me/phone HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pho",
    ] {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(stalled).await.unwrap();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut buf)).await;
        assert!(
            closed.is_ok(),
            "still open: {:?}",
            String::from_utf8_lossy(stalled)
        );
    }
    app.stop().await;
}

/// Before: `Expect: 100-continue` with 10 MB got `100 Continue`, and the 413 then raced the
/// upload. Now the declared length is refused before any byte of the body is read.
#[tokio::test]
async fn an_oversized_declared_body_is_413_before_the_upload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let token = app.token("big-uploader");
    for _ in 0..10 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT /auth/v1/users/me/phone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 10485760\r\nExpect: 100-continue\r\n\r\n"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut buf))
            .await
            .expect("answered and closed")
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(!text.contains("100 Continue"), "{text}");
        assert!(text.contains(r#""code":3"#), "{text}");
    }
    assert!(app.events("big-uploader").await.is_empty());
    app.stop().await;
}

/// Before: Swagger UI had neither a Content-Security-Policy nor X-Frame-Options. (The
/// consumer suite's browser test still drives "Try it out" under this policy.)
#[tokio::test]
async fn swagger_ui_is_served_with_a_content_security_policy_and_never_framed() {
    let app = spawn_app().await;
    for file in ["/swagger-ui/", "/swagger-ui/swagger-initializer.js"] {
        let resp = app
            .client
            .get(format!("{}{file}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
    }
    app.stop().await;
}

/// Reads what the server sends until it closes (at most 5 s).
async fn read_until_closed(c: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&buf).into_owned()
}

/// The JSON body of a raw HTTP/1.1 answer.
fn json_body(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").expect("a head and a body").1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// Before: hyper's own 400 and 431 answers had empty bodies.
#[tokio::test]
async fn the_http_librarys_own_answers_are_in_the_contract_shape() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    for (request, status) in [
        (huge_header.as_bytes(), "431"),
        (&b"GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n"[..], "400"),
        (&b"GE\x01T / HTTP/1.1\r\n\r\n"[..], "400"),
    ] {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(request).await.unwrap();
        let answer = read_until_closed(&mut c).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );
        let body = json_body(&answer);
        assert_eq!(body["code"], 3, "{answer}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    app.stop().await;
}

/// Before: a header byte every few seconds kept a connection open for good (each byte reset
/// the idle timeout). Now the whole head must arrive within `header_read_timeout`.
#[tokio::test]
async fn a_slowly_dripped_header_is_cut_at_the_header_deadline_with_408() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| s.header_read_timeout = Duration::from_millis(600)).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    c.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // A header line every 100 ms: never idle, never complete.
    let mut dripped = 0;
    while c.write_all(b"X-Drip: 1\r\n").await.is_ok() && dripped < 30 {
        dripped += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 1];
        if c.try_read(&mut probe).is_ok_and(|n| n > 0) {
            let mut rest = probe.to_vec();
            rest.extend(read_until_closed(&mut c).await.into_bytes());
            let answer = String::from_utf8_lossy(&rest).into_owned();
            assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
            assert_eq!(json_body(&answer)["code"], 4, "{answer}");
            break;
        }
    }
    assert!(dripped < 30, "still reading the header after 3 s");
    assert!(started.elapsed() < Duration::from_secs(2));
    app.stop().await;
}

/// Before: of 10 2 MiB uploads without `Expect`, about half ended in a connection reset over
/// HTTP/1.1 and 3 of 3 in a stream error over HTTP/2 instead of the 413 answer.
#[tokio::test]
async fn oversized_uploads_receive_the_413_body_over_http1_and_http2() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let token = app.token("big-sender");
    let body = format!(r#"{{"phone":"{}"}}"#, "1".repeat(2 << 20));
    for _ in 0..10 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT /auth/v1/users/me/phone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        // The server may stop reading before all of it is sent; the answer is what counts.
        let _ = c.write_all(body.as_bytes()).await;
        let answer = read_until_closed(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert_eq!(json_body(&answer)["code"], 3, "{answer}");
    }
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..10 {
        let resp = h2
            .put(format!("{}/auth/v1/users/me/phone", app.address))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the 413 answer, not a stream error");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 413);
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["code"], 3);
    }
    assert!(app.events("big-sender").await.is_empty());
    app.stop().await;
}

/// Before: nothing found out that an HTTP/2 peer had gone. Now it is pinged, and one that does
/// not answer is dropped well before the idle timeout.
#[tokio::test]
async fn an_http2_peer_that_does_not_answer_pings_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| {
        s.http2_keepalive_interval = Duration::from_millis(300);
        s.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    // The connection preface and an empty SETTINGS frame; after that, silence (no ACKs).
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let frames = read_until_closed(&mut c).await;
    assert!(!frames.is_empty(), "the server spoke HTTP/2");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "dropped after {:?}",
        started.elapsed()
    );
    app.stop().await;
}

/// Before: a connection that sent nothing held its slot for the whole idle timeout (60 s), so
/// ~1,000 of them renewed once a minute kept everyone else out.
#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_deadline() {
    let app = spawn_app_with(|s| {
        s.header_read_timeout = Duration::from_millis(400);
        s.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    let said = read_until_closed(&mut c).await;
    assert_eq!(said, "", "nothing asked, nothing answered");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

/// Before: a body dripping one byte at a time (never idle) kept its request open for good.
/// Now the whole request has `request_timeout` to arrive and be answered.
#[tokio::test]
async fn a_slowly_dripped_body_is_cut_at_the_request_deadline_with_408() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| {
        s.request_timeout = Duration::from_millis(700);
        s.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let token = app.token("dripper");
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /auth/v1/users/me/phone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let drip = async {
        for _ in 0..100 {
            if c.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut probe = [0u8; 1];
            if c.try_read(&mut probe).is_ok_and(|n| n > 0) {
                let mut rest = probe.to_vec();
                rest.extend(read_until_closed(&mut c).await.into_bytes());
                return String::from_utf8_lossy(&rest).into_owned();
            }
        }
        panic!("still reading the body after 5 s");
    };
    let answer = drip.await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_eq!(json_body(&answer)["code"], 4, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(app.events("dripper").await.is_empty());
    app.stop().await;
}

/// Before: 100 HTTP/2 connections × 100 stalled streams took the process to 512 MB. Now at most
/// `max_requests_in_flight` requests are in handlers at once; more are answered 503 at once,
/// so what unfinished requests hold is bounded whatever the number of connections and streams.
#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_answered_503_at_once() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| s.max_requests_in_flight = 2).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let token = app.token("holder");
    // Two requests whose bodies do not come hold both places.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT /auth/v1/users/me/phone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"pho"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        holders.push(c);
    }
    let healthz = format!("{}/healthz", app.address);
    let busy = poll_until(Duration::from_secs(3), || async {
        let resp = app.client.get(&healthz).send().await.unwrap();
        (resp.status() == 503).then_some(resp)
    })
    .await
    .expect("a third request is refused while two are held");
    assert_eq!(busy.headers()["retry-after"], "1");
    let body: serde_json::Value = busy.json().await.unwrap();
    assert_eq!(body["code"], 14);
    // Once they end, requests are served again.
    drop(holders);
    let served = poll_until(Duration::from_secs(3), || async {
        let resp = app.client.get(&healthz).send().await.unwrap();
        (resp.status() == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "served again after the holders left");
    assert!(app.events("holder").await.is_empty());
    app.stop().await;
}

/// Calls `check` until it gives something, for at most `limit`.
async fn poll_until<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if let Some(found) = check().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
