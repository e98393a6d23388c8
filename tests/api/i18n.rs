//! Languages: every catalog row in every shipped language on REST and gRPC (texts from
//! `tests/fixtures/error_texts.tsv`, copied from ZITADEL's files), how the language is picked
//! (token claim, `Accept-Language`, default), what is never translated, and the SMS.
use phoneproof::grpc::pb::google::rpc::Status as RpcStatus;
use phoneproof::grpc::pb::zitadel::auth::v1 as pb;
use phoneproof::grpc::pb::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use phoneproof::grpc::pb::zitadel::v1::ErrorDetail;
use phoneproof::outbox::Delivery;
use proptest::prelude::*;
use prost::Message;
use reqwest::Method;
use serde_json::{Value, json};
use tonic::transport::Channel;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const PHONE: &str = "/auth/v1/users/me/phone";
const VERIFY: &str = "/auth/v1/users/me/phone/_verify";
const RESEND: &str = "/auth/v1/users/me/phone/_resend_verification";

/// ZITADEL's texts by language and i18n key; `None` where ZITADEL ships none.
struct Texts {
    keys: Vec<String>,
    rows: Vec<(String, Vec<Option<String>>)>,
}

impl Texts {
    fn load() -> Texts {
        let mut lines = include_str!("../fixtures/error_texts.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'));
        let keys = lines.next().unwrap().split('\t').skip(1).map(String::from);
        let rows = lines
            .map(|l| {
                let mut cells = l.split('\t');
                let lang = cells.next().unwrap().to_owned();
                let texts = cells
                    .map(|c| (c != "(none)").then(|| c.to_owned()))
                    .collect();
                (lang, texts)
            })
            .collect();
        Texts {
            keys: keys.collect(),
            rows,
        }
    }

    fn languages(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|(l, _)| l.as_str())
    }

    fn zitadel(&self, lang: &str, key: &str) -> Option<&str> {
        let column = self.keys.iter().position(|k| k == key).expect("a key");
        let (_, texts) = self
            .rows
            .iter()
            .find(|(l, _)| l == lang)
            .expect("a language");
        texts[column].as_deref()
    }

    /// What phoneproof answers: ZITADEL's text, or English where ZITADEL has none.
    fn expected(&self, lang: &str, key: &str) -> String {
        self.zitadel(lang, key)
            .or_else(|| self.zitadel("en", key))
            .expect("English has every text")
            .to_owned()
    }
}

#[derive(Clone, Copy, Debug)]
enum Call<'a> {
    Set(&'a str),
    Verify(&'a str),
    Resend,
    Remove,
    Get,
}

/// A request over REST with these `Accept-Language` bytes.
async fn rest(
    app: &TestApp,
    token: &str,
    call: Call<'_>,
    accept_language: Option<&[u8]>,
) -> Answer {
    let (method, path, body) = match call {
        Call::Set(p) => (Method::PUT, PHONE, Some(json!({"phone": p}))),
        Call::Verify(c) => (Method::POST, VERIFY, Some(json!({"code": c}))),
        Call::Resend => (Method::POST, RESEND, Some(json!({}))),
        Call::Remove => (Method::DELETE, PHONE, None),
        Call::Get => (Method::GET, PHONE, None),
    };
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(v) = accept_language {
        req = req.header(
            "accept-language",
            reqwest::header::HeaderValue::from_bytes(v).expect("a legal header value"),
        );
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    answer(req.send().await.expect("request sent")).await
}

/// What a gRPC call answered: `Ok` or the status's code, message and detail (id, message).
type GrpcAnswer = Result<(), (i32, String, Option<(String, String)>)>;

async fn grpc(
    client: &mut AuthServiceClient<Channel>,
    auth: Option<&str>,
    call: Call<'_>,
    accept_language: Option<&[u8]>,
) -> GrpcAnswer {
    fn request<T>(
        message: T,
        auth: Option<&str>,
        accept_language: Option<&[u8]>,
    ) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(token) = auth {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        if let Some(v) = accept_language {
            let value = tonic::metadata::AsciiMetadataValue::try_from(v).expect("legal metadata");
            req.metadata_mut().insert("accept-language", value);
        }
        req
    }
    let result = match call {
        Call::Set(p) => client
            .set_my_phone(request(
                pb::SetMyPhoneRequest { phone: p.into() },
                auth,
                accept_language,
            ))
            .await
            .map(drop),
        Call::Verify(c) => client
            .verify_my_phone(request(
                pb::VerifyMyPhoneRequest { code: c.into() },
                auth,
                accept_language,
            ))
            .await
            .map(drop),
        Call::Resend => client
            .resend_my_phone_verification(request(
                pb::ResendMyPhoneVerificationRequest {},
                auth,
                accept_language,
            ))
            .await
            .map(drop),
        Call::Remove => client
            .remove_my_phone(request(pb::RemoveMyPhoneRequest {}, auth, accept_language))
            .await
            .map(drop),
        Call::Get => client
            .get_my_phone(request(pb::GetMyPhoneRequest {}, auth, accept_language))
            .await
            .map(drop),
    };
    result.map_err(|status| {
        let detail = (!status.details().is_empty()).then(|| {
            let rpc = RpcStatus::decode(status.details()).expect("google.rpc.Status");
            assert_eq!(rpc.message, status.message());
            let d = ErrorDetail::decode(rpc.details[0].value.as_slice()).expect("ErrorDetail");
            (d.id, d.message)
        });
        (status.code() as i32, status.message().to_owned(), detail)
    })
}

async fn grpc_client(app: &TestApp) -> AuthServiceClient<Channel> {
    let channel = Channel::from_shared(app.address.clone())
        .expect("URL")
        .connect()
        .await
        .expect("h2c connection");
    AuthServiceClient::new(channel)
}

/// Asserts a catalog error with `text` in both places ZITADEL puts it.
fn assert_text(a: &Answer, id: &str, text: &str, context: &str) {
    assert_eq!(
        a.body["message"],
        format!("{text} ({id})"),
        "{context}: {}",
        a.body
    );
    assert_eq!(a.body["details"][0]["id"], id, "{context}");
    assert_eq!(a.body["details"][0]["message"], text, "{context}");
}

fn assert_grpc_text(g: &GrpcAnswer, code: i32, id: &str, text: &str, context: &str) {
    let expected = (
        code,
        format!("{text} ({id})"),
        Some((id.to_owned(), text.to_owned())),
    );
    assert_eq!(g.as_ref().err(), Some(&expected), "{context}");
}

struct Row {
    id: &'static str,
    /// ZITADEL's i18n key; `None` for our own rows, which are English in every language.
    key: Option<&'static str>,
    english: &'static str,
    http: u16,
    code: i32,
    call: Call<'static>,
}

#[tokio::test]
async fn every_catalog_row_answers_in_every_language_over_rest_and_grpc() {
    let app = spawn_app_with(|s| s.code.policy.max_attempts = 45).await;
    let mut client = grpc_client(&app).await;
    let texts = Texts::load();
    let rows = [
        Row {
            id: "PHONE-so0wa",
            key: Some("Errors.User.Phone.Invalid"),
            english: "Phone is invalid",
            http: 400,
            code: 3,
            call: Call::Set("+abc"),
        },
        Row {
            id: "COMMAND-wF94r",
            key: Some("Errors.User.Phone.NotChanged"),
            english: "Phone not changed",
            http: 400,
            code: 9,
            call: Call::Set("+41 79 555 10 01"),
        },
        Row {
            id: "COMMAND-sM0cs",
            key: Some("Errors.User.Code.Invalid"),
            english: "Code is invalid",
            http: 400,
            code: 3,
            call: Call::Verify("WRONG1"),
        },
        Row {
            id: "COMMAND-Rsj8c",
            key: Some("Errors.User.Code.NotFound"),
            english: "Code not found",
            http: 404,
            code: 5,
            call: Call::Verify("ABC123"),
        },
        Row {
            id: "COMMAND-2b7Hf",
            key: Some("Errors.User.Phone.NotFound"),
            english: "Phone not found",
            http: 404,
            code: 5,
            call: Call::Resend,
        },
        Row {
            id: "COMMAND-2M9sf",
            key: Some("Errors.User.Phone.AlreadyVerified"),
            english: "Phone already verified",
            http: 400,
            code: 9,
            call: Call::Resend,
        },
        Row {
            id: "COMMAND-p6rsc",
            key: Some("Errors.User.Phone.NotFound"),
            english: "Phone not found",
            http: 404,
            code: 5,
            call: Call::Remove,
        },
        Row {
            id: "PHONEPROOF-thr0t",
            key: None,
            english: "Too many codes requested; try again later",
            http: 429,
            code: 8,
            call: Call::Resend,
        },
        Row {
            id: "PHONEPROOF-atmp5",
            key: None,
            english: "Too many wrong codes; request a new code",
            http: 429,
            code: 8,
            call: Call::Verify("WRONG1"),
        },
    ];
    let mut checked = 0;
    for (i, row) in rows.iter().enumerate() {
        // One user per row, brought to the state in which the call fails that way.
        let user = format!("lang-row{i}");
        let t = app.token(&user);
        let phone = format!("+41 79 555 10 0{i}");
        match row.id {
            "COMMAND-wF94r" | "COMMAND-sM0cs" | "PHONEPROOF-thr0t" | "PHONEPROOF-atmp5" => {
                assert_eq!(rest(&app, &t, Call::Set(&phone), None).await.status, 200);
            }
            "COMMAND-2M9sf" => {
                assert_eq!(rest(&app, &t, Call::Set(&phone), None).await.status, 200);
                let code = app.wait_for_code(&phone.replace(' ', ""), 1).await;
                assert_eq!(app.verify(&t, &code).await.status, 200);
            }
            _ => {}
        }
        if row.id == "PHONEPROOF-atmp5" {
            for _ in 0..45 {
                rest(&app, &t, Call::Verify("WRONG1"), None).await;
            }
        }
        let call = match row.call {
            Call::Set(p) if p.starts_with("+41") => Call::Set(&phone),
            other => other,
        };
        for lang in texts.languages() {
            let text = match row.key {
                Some(key) => texts.expected(lang, key),
                None => row.english.to_owned(),
            };
            let context = format!("{} in {lang}", row.id);
            let a = rest(&app, &t, call, Some(lang.as_bytes())).await;
            assert_eq!(a.status.as_u16(), row.http, "{context}: {}", a.body);
            assert_eq!(a.body["code"], row.code, "{context}");
            assert_text(&a, row.id, &text, &context);
            let g = grpc(&mut client, Some(&t), call, Some(lang.as_bytes())).await;
            assert_grpc_text(&g, row.code, row.id, &text, &format!("{context} over gRPC"));
            checked += 1;
        }
        // No language asked for: English, byte for byte as ever.
        let a = rest(&app, &t, call, None).await;
        assert_text(&a, row.id, row.english, row.id);
    }
    assert_eq!(checked, rows.len() * 20);
    app.stop().await;
}

#[tokio::test]
async fn ids_without_a_zitadel_text_answer_in_english() {
    // ZITADEL answers its raw key in these two cells; phoneproof answers English instead.
    let app = spawn_app().await;
    let t = app.token("gaps");
    let a = rest(&app, &t, Call::Remove, Some(b"fr")).await;
    assert_text(&a, "COMMAND-p6rsc", "Phone not found", "fr");
    assert_eq!(
        rest(&app, &t, Call::Set("+41 79 555 20 00"), None)
            .await
            .status,
        200
    );
    let a = rest(&app, &t, Call::Verify("WRONG1"), Some(b"mk")).await;
    assert_text(&a, "COMMAND-sM0cs", "Code is invalid", "mk");
    app.stop().await;
}

#[tokio::test]
async fn the_language_comes_from_the_token_then_the_header_then_the_default() {
    let app = spawn_app_with(|s| {
        s.i18n.default_language = phoneproof::i18n::Language::from_code("it").unwrap();
    })
    .await;
    let mut client = grpc_client(&app).await;
    let texts = Texts::load();
    let invalid = |lang: &str| texts.expected(lang, "Errors.User.Phone.Invalid");
    let plain = app.token("plain");
    // (token language claim, Accept-Language, the language answered, why)
    type Case<'a> = (Option<&'a str>, Option<&'a [u8]>, &'a str, &'a str);
    let cases: &[Case] = &[
        (
            Some("fr"),
            Some(b"de"),
            "fr",
            "the token's language beats the header",
        ),
        (
            Some("pt-BR"),
            None,
            "pt",
            "a regional token language falls back to its base",
        ),
        (
            Some("fi"),
            Some(b"de"),
            "de",
            "a token language not shipped yields to the header",
        ),
        (Some("und"), Some(b"ja"), "ja", "\"und\" is no language"),
        (None, Some(b"de-CH,fr;q=0.5"), "de", "de-CH is German"),
        (None, Some(b"fr;q=0.5,de-CH"), "de", "by q, not by order"),
        (None, Some(b"de;q=0,fr;q=0.1"), "fr", "q=0 excludes"),
        (None, Some(b"fi"), "it", "not shipped: the default"),
        (None, Some(b"*"), "it", "any: the default"),
        (None, Some(b""), "it", "empty: the default"),
        (None, Some(b"de;q=abc"), "it", "malformed: the default"),
        (
            None,
            Some(b"de,fr;q=2"),
            "it",
            "one bad entry spoils the header",
        ),
        (
            None,
            Some("d\u{e9}".as_bytes()),
            "it",
            "not ASCII: the default",
        ),
        (None, None, "it", "no header: the default"),
        (
            Some("fi"),
            None,
            "it",
            "nothing shipped anywhere: the default",
        ),
    ];
    for (i, (claim, header, want, why)) in cases.iter().enumerate() {
        let t = match claim {
            Some(c) => app.token_speaking(&format!("claim{i}"), c),
            None => plain.clone(),
        };
        let a = rest(&app, &t, Call::Set("+abc"), *header).await;
        assert_eq!(a.status, 400, "{why}");
        assert_text(&a, "PHONE-so0wa", &invalid(want), why);
        // gRPC metadata carries only ASCII.
        if header.is_none_or(|h| h.is_ascii()) {
            let g = grpc(&mut client, Some(&t), Call::Set("+abc"), *header).await;
            assert_grpc_text(
                &g,
                3,
                "PHONE-so0wa",
                &invalid(want),
                &format!("{why} (gRPC)"),
            );
        }
    }
    // Two header fields are one list.
    let r = app
        .client
        .put(format!("{}{PHONE}", app.address))
        .bearer_auth(&plain)
        .header("accept-language", "fi")
        .header("accept-language", "sv;q=0.4")
        .json(&json!({"phone": "+abc"}))
        .send()
        .await
        .unwrap();
    assert_text(
        &answer(r).await,
        "PHONE-so0wa",
        &invalid("sv"),
        "two fields",
    );
    app.stop().await;
}

#[tokio::test]
async fn zitadels_untranslated_messages_stay_english_under_accept_language_de() {
    let app = spawn_app().await;
    let mut client = grpc_client(&app).await;
    let t = app.token("untranslated");
    let de = Some(&b"de"[..]);
    let call = |method: Method, path: &str, auth: Option<&str>| {
        let mut req = app
            .client
            .request(method, format!("{}{path}", app.address))
            .header("accept-language", "de");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req
    };
    let send =
        |req: reqwest::RequestBuilder| async move { answer(req.send().await.unwrap()).await };

    assert_validation(
        &rest(&app, &t, Call::Set("41 71 000 00 00"), de).await,
        "invalid SetMyPhoneRequest.Phone: value does not have prefix \"+\"",
    );
    assert_validation(
        &rest(&app, &t, Call::Verify(""), de).await,
        "invalid VerifyMyPhoneRequest.Code: value length must be between 1 and 200 runes, inclusive",
    );
    let a = send(call(Method::GET, PHONE, None)).await;
    assert_eq!(
        a.body,
        json!({"code": 16, "message": "auth header missing"})
    );
    let a = send(call(Method::GET, PHONE, Some("Basic dXNlcjpwdw=="))).await;
    assert_error(&a, 401, 16, "AUTH-toLo1", "invalid auth header");
    let a = send(call(Method::GET, PHONE, Some("Bearer not.a.jwt"))).await;
    assert_error(&a, 401, 16, "AUTH-7fs1e", "Errors.Token.Invalid");
    // The token's language does not reach errors found before the token is checked.
    let speaking = app.token_speaking("untranslated", "de");
    let a = send(call(
        Method::GET,
        "/auth/v1/users/me/nothing",
        Some(&format!("Bearer {speaking}")),
    ))
    .await;
    assert_eq!(
        (a.status.as_u16(), &a.body),
        (404, &json!({"code": 5, "message": "Not Found"}))
    );
    let a = send(call(
        Method::PATCH,
        PHONE,
        Some(&format!("Bearer {speaking}")),
    ))
    .await;
    assert_eq!(
        (a.status.as_u16(), &a.body),
        (405, &json!({"code": 12, "message": "Method Not Allowed"}))
    );

    let g = grpc(&mut client, Some(&t), Call::Set("41 71 000 00 00"), de).await;
    assert_eq!(
        g,
        Err((
            3,
            "invalid SetMyPhoneRequest.Phone: value does not have prefix \"+\"".into(),
            None
        ))
    );
    let g = grpc(&mut client, None, Call::Get, de).await;
    assert_eq!(g, Err((16, "auth header missing".into(), None)));
    let g = grpc(&mut client, Some("not.a.jwt"), Call::Get, de).await;
    assert_grpc_text(
        &g,
        16,
        "AUTH-7fs1e",
        "Errors.Token.Invalid",
        "bad token over gRPC",
    );
    // And a translated row really is German here.
    let a = rest(&app, &t, Call::Remove, de).await;
    assert_text(&a, "COMMAND-p6rsc", "Telefonnummer nicht gefunden", "de");
    app.stop().await;
}

#[tokio::test]
async fn the_sms_is_written_in_the_language_of_the_request_that_asked_for_the_code() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&provider)
        .await;
    let app = spawn_app_with(|s| {
        s.sms.provider = phoneproof::config::SmsProvider::Http {
            url: format!("{}/sms", provider.uri()).parse().unwrap(),
            signing_key: None,
        };
        s.outbox.worker = false;
    })
    .await;
    let mut client = grpc_client(&app).await;
    let t = app.token("polyglot");
    let sent = |n: usize| {
        let provider = &provider;
        let app = &app;
        async move {
            assert_eq!(
                app.worker.deliver_next().await.unwrap(),
                [Delivery::Delivered]
            );
            let received = provider.received_requests().await.unwrap();
            assert_eq!(received.len(), n);
            serde_json::from_slice::<Value>(&received[n - 1].body).unwrap()
        }
    };

    assert_eq!(
        rest(
            &app,
            &t,
            Call::Set("+41 71 000 00 00"),
            Some(b"fr-CA, en;q=0.5")
        )
        .await
        .status,
        200
    );
    let body = sent(1).await;
    let code = body["args"]["code"].as_str().unwrap().to_owned();
    assert_eq!(
        body["templateData"],
        json!({
            "title": "ZITADEL - Vérifier le téléphone",
            "preHeader": "Vérifier le téléphone",
            "subject": "Vérifier le téléphone",
            "greeting": "Bonjour ,",
            "text": format!("Un nouveau numéro de téléphone a été ajouté. Veuillez utiliser le code suivant pour le vérifier {code}"),
            "buttonText": "Vérifier le téléphone",
        })
    );

    app.advance(31_000);
    assert_eq!(rest(&app, &t, Call::Resend, Some(b"de")).await.status, 200);
    let body = sent(2).await;
    let code = body["args"]["code"].as_str().unwrap().to_owned();
    let text = body["templateData"]["text"].as_str().unwrap();
    assert_eq!(
        text,
        format!(
            "Eine Telefonnummer wurde hinzugefügt. Bitte verifiziere diese, indem du folgenden Code eingibst (Code {code})."
        )
    );
    assert!(
        !text.contains("&lt;") && !text.contains("&gt;") && !text.contains('<'),
        "{text}"
    );
    assert_eq!(body["templateData"]["title"], "Telefonnummer verifizieren");

    // Over gRPC, the metadata picks it; a token's language beats it.
    app.advance(31_000);
    assert!(
        grpc(&mut client, Some(&t), Call::Resend, Some(b"ja"))
            .await
            .is_ok()
    );
    let body = sent(3).await;
    assert_eq!(
        body["templateData"]["text"],
        format!(
            "新しい電話番号が追加されました。次のコードを使用してを認証してください {}",
            body["args"]["code"].as_str().unwrap()
        )
    );
    app.advance(31_000);
    let italian = app.token_speaking("polyglot", "it");
    assert!(
        grpc(&mut client, Some(&italian), Call::Resend, Some(b"ja"))
            .await
            .is_ok()
    );
    let body = sent(4).await;
    assert_eq!(body["templateData"]["buttonText"], "Verifica");

    // The language is recorded with each code.
    let languages: Vec<Value> = app
        .events("polyglot")
        .await
        .iter()
        .filter(|e| e.event_type == "user.human.phone.code.added")
        .map(|e| serde_json::from_str::<Value>(&e.payload).unwrap()["language"].clone())
        .collect();
    assert_eq!(
        languages,
        [json!("fr"), json!("de"), json!("ja"), json!("it")]
    );
    app.stop().await;
}

#[tokio::test]
async fn the_operators_texts_override_zitadels_per_language_then_for_all() {
    let app = spawn_app_with(|s| {
        s.sms.texts.all = Some("Code: {code}".into());
        s.sms.texts.by_language = vec![(
            phoneproof::i18n::Language::from_code("de").unwrap(),
            "Dein Code: {code}".into(),
        )];
    })
    .await;
    let t = app.token("operator");
    assert_eq!(
        rest(&app, &t, Call::Set("+41 71 000 00 01"), Some(b"de"))
            .await
            .status,
        200
    );
    let t2 = app.token("operator2");
    assert_eq!(
        rest(&app, &t2, Call::Set("+41 71 000 00 02"), Some(b"fr"))
            .await
            .status,
        200
    );
    app.wait_for_code("+41710000001", 1).await;
    app.wait_for_code("+41710000002", 1).await;
    let texts: Vec<String> = app
        .sms_messages()
        .iter()
        .map(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .rsplit_once(' ')
                .unwrap()
                .0
                .to_owned()
        })
        .collect();
    assert!(texts.contains(&"Dein Code:".to_owned()), "{texts:?}");
    assert!(texts.contains(&"Code:".to_owned()), "{texts:?}");
    app.stop().await;
}

/// Every byte string that may travel as a header value: visible ASCII, space, tab, obs-text.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let legal = prop::sample::select(
        (0u8..=255)
            .filter(|b| *b == b'\t' || (0x20..0x7f).contains(b) || *b >= 0x80)
            .collect::<Vec<u8>>(),
    );
    let listy = prop::sample::select(
        [
            "de", "de-CH", "fr", "*", "fi", "zh-TW", ";q=0", ";q=0.5", ";q=1", ";q=", ",", " ",
            "-", "_", "x",
        ]
        .map(|s| s.as_bytes().to_vec())
        .to_vec(),
    );
    prop_oneof![
        proptest::collection::vec(legal, 0..40),
        proptest::collection::vec(listy, 0..8).prop_map(|parts| parts.concat()),
    ]
    // A value is sent as given; leading and trailing whitespace would be trimmed on the way.
    .prop_map(|v| v.trim_ascii().to_vec())
}

#[test]
fn any_accept_language_answers_200_or_a_catalog_error_in_a_shipped_language() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let client = rt.block_on(grpc_client(&app));
    let texts = Texts::load();
    let invalid: Vec<String> = texts
        .languages()
        .map(|l| texts.expected(l, "Errors.User.Phone.Invalid"))
        .collect();
    let t = app.token("fuzzy");
    let cfg = ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(value in header_value())| {
        let a = rt.block_on(rest(&app, &t, Call::Get, Some(&value)));
        prop_assert_eq!(a.status.as_u16(), 200, "{:?}: {}", value, a.body);
        let a = rt.block_on(rest(&app, &t, Call::Set("+abc"), Some(&value)));
        prop_assert_eq!(a.status.as_u16(), 400, "{:?}: {}", value, a.body);
        let text = a.body["details"][0]["message"].as_str().unwrap_or_default().to_owned();
        prop_assert!(invalid.contains(&text), "{:?}: {}", value, a.body);
        // gRPC metadata is printable ASCII.
        if value.iter().all(|b| (0x20..0x7f).contains(b)) {
            let g = rt.block_on(grpc(&mut client.clone(), Some(&t), Call::Set("+abc"), Some(&value)));
            let detail = g.err().and_then(|(code, _, d)| (code == 3).then_some(d)).flatten();
            prop_assert!(detail.is_some_and(|(_, m)| invalid.contains(&m)), "{:?}", value);
        }
    });
    rt.block_on(app.stop());
}
