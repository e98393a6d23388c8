//! The gRPC surface beyond the scenario table: gRPC-web over HTTP/1.1 frame by frame, CORS,
//! reflection, health, methods not served, the size limit and the metrics.
use base64::Engine;
use phoneproof::grpc::pb::zitadel::auth::v1 as pb;
use phoneproof::grpc::pb::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use prost::Message;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;

const SERVICE: &str = "/zitadel.auth.v1.AuthService";

async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(app.address.clone())
        .expect("URL")
        .connect()
        .await
        .expect("h2c connection")
}

/// A gRPC-web request body: one uncompressed message frame.
fn frame(message: &impl Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// A gRPC-web answer: its frames as (flag, payload), plus the headers.
struct WebAnswer {
    http: u16,
    headers: reqwest::header::HeaderMap,
    frames: Vec<(u8, Vec<u8>)>,
}

impl WebAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The trailer frame's lines, `name:value`.
    fn trailers(&self) -> String {
        let (flag, payload) = self.frames.last().expect("a trailer frame");
        assert_eq!(*flag, 0x80, "the last frame is the trailer frame");
        String::from_utf8(payload.clone()).expect("trailers are text")
    }
}

fn parse_frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 5, "a frame header is 5 bytes: {body:?}");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        frames.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    frames
}

/// gRPC-web over HTTP/1.1, as a browser's fetch sends it.
async fn web_call(
    app: &TestApp,
    method: &str,
    token: Option<&str>,
    message: &impl Message,
    text: bool,
) -> WebAnswer {
    web_call_over(app, method, token, message, text, false).await
}

async fn web_call_over(
    app: &TestApp,
    method: &str,
    token: Option<&str>,
    message: &impl Message,
    text: bool,
    http2: bool,
) -> WebAnswer {
    let client = if http2 {
        reqwest::Client::builder().http2_prior_knowledge().build()
    } else {
        reqwest::Client::builder().http1_only().build()
    }
    .unwrap();
    let body = frame(message);
    let (content_type, body) = if text {
        (
            "application/grpc-web-text",
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .into_bytes(),
        )
    } else {
        ("application/grpc-web+proto", body)
    };
    let mut req = client
        .post(format!("{}{SERVICE}/{method}", app.address))
        .header("content-type", content_type)
        // As grpc-web's JavaScript client asks: the answer in the request's encoding.
        .header("accept", content_type)
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("sent");
    let version = if http2 {
        reqwest::Version::HTTP_2
    } else {
        reqwest::Version::HTTP_11
    };
    assert_eq!(resp.version(), version);
    let http = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.bytes().await.unwrap().to_vec();
    let raw = if text {
        // Each frame is encoded on its own, padding included, so the answer is decoded one
        // 4-character quantum at a time, as grpc-web clients do.
        raw.chunks(4)
            .flat_map(|quantum| {
                base64::engine::general_purpose::STANDARD
                    .decode(quantum)
                    .expect("grpc-web-text answers in base64")
            })
            .collect()
    } else {
        raw
    };
    WebAnswer {
        http,
        headers,
        frames: parse_frames(&raw),
    }
}

/// An error over gRPC-web: HTTP 200, the status in the headers, no body at all.
fn assert_web_error(a: &WebAnswer, code: &str, message: &str, id: Option<&str>) {
    assert_eq!(a.http, 200);
    assert!(a.frames.is_empty(), "header-only answer: {:?}", a.frames);
    assert_eq!(a.header("grpc-status"), Some(code));
    assert_eq!(a.header("grpc-message"), Some(message));
    match id {
        Some(id) => {
            let bin = a.header("grpc-status-details-bin").expect("details");
            let raw = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(bin.trim_end_matches('='))
                .expect("base64");
            let status = phoneproof::grpc::pb::google::rpc::Status::decode(raw.as_slice()).unwrap();
            let detail = phoneproof::grpc::pb::zitadel::v1::ErrorDetail::decode(
                status.details[0].value.as_slice(),
            )
            .unwrap();
            assert_eq!(detail.id, id);
        }
        None => assert!(a.header("grpc-status-details-bin").is_none()),
    }
}

#[tokio::test]
async fn grpc_web_over_http1_the_whole_happy_path_and_errors() {
    let app = spawn_app().await;
    let token = app.token("web-user");
    let t = Some(token.as_str());

    let set = web_call(
        &app,
        "SetMyPhone",
        t,
        &pb::SetMyPhoneRequest {
            phone: "+41 79 444 00 01".into(),
        },
        false,
    )
    .await;
    assert_eq!(set.http, 200);
    assert_eq!(set.frames.len(), 2, "one message, one trailer frame");
    assert_eq!(set.frames[0].0, 0x00);
    let details = pb::SetMyPhoneResponse::decode(set.frames[0].1.as_slice())
        .unwrap()
        .details
        .unwrap();
    assert!(details.sequence > 0 && details.change_date.is_some());
    assert!(
        set.trailers().contains("grpc-status:0"),
        "{}",
        set.trailers()
    );

    let code = app.wait_for_code("+41794440001", 1).await;
    // The text variant, base64 both ways.
    let verify = web_call(
        &app,
        "VerifyMyPhone",
        t,
        &pb::VerifyMyPhoneRequest { code },
        true,
    )
    .await;
    assert_eq!(verify.http, 200);
    assert!(verify.trailers().contains("grpc-status:0"));

    let get = web_call(&app, "GetMyPhone", t, &pb::GetMyPhoneRequest {}, false).await;
    let phone = pb::GetMyPhoneResponse::decode(get.frames[0].1.as_slice())
        .unwrap()
        .phone
        .unwrap();
    assert_eq!(phone.phone, "+41794440001");
    assert!(phone.is_phone_verified);

    let remove = web_call(
        &app,
        "RemoveMyPhone",
        t,
        &pb::RemoveMyPhoneRequest {},
        false,
    )
    .await;
    assert!(remove.trailers().contains("grpc-status:0"));

    // Three error rows: no details, a detail, and the one REST answers 404.
    let a = web_call(&app, "GetMyPhone", None, &pb::GetMyPhoneRequest {}, false).await;
    assert_web_error(&a, "16", "auth header missing", None);
    let a = web_call(
        &app,
        "ResendMyPhoneVerification",
        t,
        &pb::ResendMyPhoneVerificationRequest {},
        false,
    )
    .await;
    assert_web_error(
        &a,
        "5",
        "Phone not found (COMMAND-2b7Hf)",
        Some("COMMAND-2b7Hf"),
    );
    let a = web_call(
        &app,
        "SetMyPhone",
        t,
        &pb::SetMyPhoneRequest {
            phone: "41794440001".into(),
        },
        true,
    )
    .await;
    assert_web_error(
        &a,
        "3",
        "invalid SetMyPhoneRequest.Phone: value does not have prefix \"+\"",
        None,
    );
    app.stop().await;
}

#[tokio::test]
async fn grpc_web_over_http2_answers_alike() {
    let app = spawn_app().await;
    let token = app.token("web-h2");
    let set = web_call_over(
        &app,
        "SetMyPhone",
        Some(&token),
        &pb::SetMyPhoneRequest {
            phone: "+41 79 444 00 02".into(),
        },
        false,
        true,
    )
    .await;
    assert_eq!(set.frames[0].0, 0x00);
    assert!(
        set.trailers().contains("grpc-status:0"),
        "{}",
        set.trailers()
    );
    let again = web_call_over(
        &app,
        "SetMyPhone",
        Some(&token),
        &pb::SetMyPhoneRequest {
            phone: "+41 79 444 00 02".into(),
        },
        true,
        true,
    )
    .await;
    assert_web_error(
        &again,
        "9",
        "Phone not changed (COMMAND-wF94r)",
        Some("COMMAND-wF94r"),
    );
    app.stop().await;
}

#[tokio::test]
async fn browsers_get_cors_on_the_grpc_web_routes() {
    let app = spawn_app().await;
    let url = format!("{}{SERVICE}/GetMyPhone", app.address);
    let pre = app
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://console.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web,x-user-agent",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    let h = pre.headers();
    assert!(h.contains_key("access-control-allow-origin"), "{h:?}");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for name in ["authorization", "content-type", "x-grpc-web"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    // The error of the call itself is readable by the page.
    let resp = app
        .client
        .post(&url)
        .header("origin", "https://console.example.com")
        .header("content-type", "application/grpc-web+proto")
        .body(frame(&pb::GetMyPhoneRequest {}))
        .send()
        .await
        .unwrap();
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    app.stop().await;
}

#[tokio::test]
async fn allowed_origins_can_be_narrowed() {
    let app = spawn_app_with(|s| {
        s.grpc_web_origins =
            phoneproof::config::AllowedOrigins::List(vec!["https://console.example.com".into()]);
    })
    .await;
    let url = format!("{}{SERVICE}/GetMyPhone", app.address);
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let good = preflight("https://console.example.com").await.unwrap();
    assert!(good.status().is_success());
    assert_eq!(
        good.headers()["access-control-allow-origin"],
        "https://console.example.com"
    );
    let bad = preflight("https://evil.example").await.unwrap();
    assert!(
        !bad.headers().contains_key("access-control-allow-origin"),
        "{:?}",
        bad.headers()
    );
    app.stop().await;
}

#[tokio::test]
async fn methods_not_served_are_unimplemented_and_rest_clients_get_the_contract_shape() {
    let app = spawn_app().await;
    // Another AuthService method, called as a tonic client would.
    let mut grpc = tonic::client::Grpc::new(channel(&app).await);
    grpc.ready().await.unwrap();
    let path = "/zitadel.auth.v1.AuthService/GetMyUser".parse().unwrap();
    let status = grpc
        .unary::<_, pb::GetMyPhoneResponse, _>(
            tonic::Request::new(pb::GetMyPhoneRequest {}),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);

    // A plain HTTP request on a gRPC path: the contract's error, not an empty 400.
    let a = answer(
        app.client
            .post(format!("{}{SERVICE}/GetMyPhone", app.address))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["code"], 3);
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("application/grpc")
    );

    // A gRPC content type on a REST path is an ordinary REST request, with everything the
    // REST path adds (the router fuzz target found it skipped that path).
    let a = answer(
        app.client
            .get(format!("{}/auth/v1/users/me/phone", app.address))
            .header("content-type", "application/grpc-web")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["message"], "auth header missing");
    assert_eq!(a.headers["cache-control"], "no-store");

    // What tonic-web answers with an empty body gets the contract's shape: gRPC-web with
    // another method than POST, and plain gRPC over HTTP/1.1.
    let a = answer(
        app.client
            .get(format!("{}{SERVICE}/GetMyPhone", app.address))
            .header("content-type", "application/grpc-web+proto")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 405);
    assert_eq!(a.body["code"], 12);
    assert_eq!(a.headers["allow"], "POST");
    let a = answer(
        reqwest::Client::builder()
            .http1_only()
            .build()
            .unwrap()
            .post(format!("{}{SERVICE}/GetMyPhone", app.address))
            .header("content-type", "application/grpc")
            .body(frame(&pb::GetMyPhoneRequest {}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["code"], 3);
    assert!(
        a.body["message"].as_str().unwrap().contains("HTTP/2"),
        "{}",
        a.body
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_larger_than_the_body_limit_is_refused() {
    let app = spawn_app().await;
    let mut client = AuthServiceClient::new(channel(&app).await);
    let mut req = tonic::Request::new(pb::SetMyPhoneRequest {
        phone: "+".repeat(70 * 1024),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token("big")).parse().unwrap(),
    );
    let status = client.set_my_phone(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(app.events("big").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(channel(&app).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in ["zitadel.auth.v1.AuthService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == name), "{names:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_follows_readiness() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(channel(&app).await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    for service in ["", "zitadel.auth.v1.AuthService"] {
        let status = health
            .check(check(service))
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    if on_postgres() {
        return app.stop().await.close().unwrap();
    }
    // Writes cannot commit while another connection holds SQLite's write lock.
    let mut c = app.hold_sqlite_write_lock().await;
    let status = health.check(check("")).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::NotServing as i32);
    sqlx::query("COMMIT").execute(&mut c).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn grpc_calls_are_counted_by_method_and_code() {
    let app = spawn_app().await;
    let mut client = AuthServiceClient::new(channel(&app).await);
    let mut req = tonic::Request::new(pb::RemoveMyPhoneRequest {});
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token("counted")).parse().unwrap(),
    );
    assert_eq!(
        client.remove_my_phone(req).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(
            "phoneproof_grpc_request_duration_seconds_count{method=\"RemoveMyPhone\",code=\"5\"} 1"
        ),
        "{metrics}"
    );
    // gRPC calls are not counted as REST requests.
    assert!(!metrics.contains("route=\"/grpc\""), "{metrics}");
    app.stop().await;
}
