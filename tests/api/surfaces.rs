//! One scenario table, every surface: each row runs over REST/JSON and over gRPC (a tonic
//! client on h2c), from a fresh user, and must end the same way on both: the gRPC code, the
//! message, the detail id, and for reads the phone and its state. A row added here is asked of
//! every surface.
use phoneproof::grpc::pb::google::rpc::Status as RpcStatus;
use phoneproof::grpc::pb::zitadel::auth::v1 as pb;
use phoneproof::grpc::pb::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use phoneproof::grpc::pb::zitadel::v1::ErrorDetail;
use prost::Message;
use tonic::transport::Channel;

use crate::helpers::*;

const LENGTH_50: &str =
    "invalid SetMyPhoneRequest.Phone: value length must be between 1 and 50 runes, inclusive";
const PREFIX: &str = "invalid SetMyPhoneRequest.Phone: value does not have prefix \"+\"";
const LENGTH_200: &str =
    "invalid VerifyMyPhoneRequest.Code: value length must be between 1 and 200 runes, inclusive";

#[derive(Clone, Copy, Debug)]
enum Auth {
    Good,
    Missing,
    NotBearer,
    BadToken,
}

#[derive(Clone, Copy, Debug)]
enum Code {
    /// The code of the last SMS to the row's number.
    Sent,
    Literal(&'static str),
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Get,
    /// The row's own number (in national spacing), or a literal.
    SetOwn,
    Set(&'static str),
    Verify(Code),
    Resend,
    Remove,
    /// Moves the service's clock on, seconds.
    Wait(i64),
}

#[derive(Debug, PartialEq)]
struct Outcome {
    code: i32,
    message: String,
    id: Option<String>,
    /// For reads: the phone (None when the user has none) and whether it is verified.
    phone: Option<(Option<String>, bool)>,
    /// Whether a retry delay came with the answer.
    retry_after: bool,
}

struct Then {
    code: i32,
    message: &'static str,
    id: Option<&'static str>,
    retry_after: bool,
}

const OK: Then = Then {
    code: 0,
    message: "",
    id: None,
    retry_after: false,
};

const fn err(code: i32, message: &'static str, id: Option<&'static str>) -> Then {
    Then {
        code,
        message,
        id,
        retry_after: false,
    }
}

const fn throttled(message: &'static str, id: &'static str) -> Then {
    Then {
        code: 8,
        message,
        id: Some(id),
        retry_after: true,
    }
}

struct Row {
    name: &'static str,
    given: &'static [Step],
    when: Step,
    auth: Auth,
    then: Then,
    /// For a Get: whether a phone is expected (the row's own number) and its verified state.
    read: Option<(bool, bool)>,
}

const fn row(name: &'static str, given: &'static [Step], when: Step, then: Then) -> Row {
    Row {
        name,
        given,
        when,
        auth: Auth::Good,
        then,
        read: None,
    }
}

const WRONG: Step = Step::Verify(Code::Literal("WRONG1"));

fn table() -> Vec<Row> {
    use Step::*;
    vec![
        Row {
            read: Some((false, false)),
            ..row("a user without a phone reads an empty phone", &[], Get, OK)
        },
        Row {
            read: Some((true, false)),
            ..row("a set phone reads back unverified", &[SetOwn], Get, OK)
        },
        Row {
            read: Some((true, true)),
            ..row(
                "a verified phone reads back verified",
                &[SetOwn, Verify(Code::Sent)],
                Get,
                OK,
            )
        },
        row("setting a valid number", &[], SetOwn, OK),
        row("verifying the sent code", &[SetOwn], Verify(Code::Sent), OK),
        row(
            "a resend after the cooldown",
            &[SetOwn, Wait(31)],
            Resend,
            OK,
        ),
        row("removing the phone", &[SetOwn], Remove, OK),
        Row {
            auth: Auth::Missing,
            ..row(
                "no authorization",
                &[],
                Get,
                err(16, "auth header missing", None),
            )
        },
        Row {
            auth: Auth::Missing,
            ..row(
                "no authorization on a mutation",
                &[],
                SetOwn,
                err(16, "auth header missing", None),
            )
        },
        Row {
            auth: Auth::NotBearer,
            ..row(
                "authorization that is not Bearer",
                &[],
                Get,
                err(16, "invalid auth header (AUTH-toLo1)", Some("AUTH-toLo1")),
            )
        },
        Row {
            auth: Auth::BadToken,
            ..row(
                "a token that does not verify",
                &[],
                Resend,
                err(16, "Errors.Token.Invalid (AUTH-7fs1e)", Some("AUTH-7fs1e")),
            )
        },
        row("an empty phone", &[], Set(""), err(3, LENGTH_50, None)),
        row(
            "a phone of 51 characters",
            &[],
            Set("+123456789012345678901234567890123456789012345678901"),
            err(3, LENGTH_50, None),
        ),
        row(
            "a phone without +",
            &[],
            Set("41 79 555 00 00"),
            err(3, PREFIX, None),
        ),
        row(
            "a phone that does not parse",
            &[],
            Set("+41 ABC"),
            err(3, "Phone is invalid (PHONE-so0wa)", Some("PHONE-so0wa")),
        ),
        row(
            "the same number again",
            &[SetOwn],
            SetOwn,
            err(
                9,
                "Phone not changed (COMMAND-wF94r)",
                Some("COMMAND-wF94r"),
            ),
        ),
        row(
            "the same number again once verified",
            &[SetOwn, Verify(Code::Sent)],
            SetOwn,
            err(
                9,
                "Phone not changed (COMMAND-wF94r)",
                Some("COMMAND-wF94r"),
            ),
        ),
        row(
            "verify without a phone",
            &[],
            Verify(Code::Literal("ABC123")),
            err(5, "Code not found (COMMAND-Rsj8c)", Some("COMMAND-Rsj8c")),
        ),
        row(
            "verify once verified",
            &[SetOwn, Verify(Code::Sent)],
            Verify(Code::Sent),
            err(5, "Code not found (COMMAND-Rsj8c)", Some("COMMAND-Rsj8c")),
        ),
        row(
            "a wrong code",
            &[SetOwn],
            WRONG,
            err(3, "Code is invalid (COMMAND-sM0cs)", Some("COMMAND-sM0cs")),
        ),
        row(
            "an expired code",
            &[SetOwn, Wait(3601)],
            Verify(Code::Sent),
            err(3, "Code is invalid (COMMAND-sM0cs)", Some("COMMAND-sM0cs")),
        ),
        row(
            "an empty code",
            &[SetOwn],
            Verify(Code::Literal("")),
            err(3, LENGTH_200, None),
        ),
        row(
            "a code of 201 characters",
            &[SetOwn],
            Verify(Code::Literal(CODE_201)),
            err(3, LENGTH_200, None),
        ),
        row(
            "the attempt cap",
            &[SetOwn, WRONG, WRONG, WRONG, WRONG, WRONG],
            Verify(Code::Sent),
            // Waiting does not help here (only a new code does): no retry delay.
            err(
                8,
                "Too many wrong codes; request a new code (PHONEPROOF-atmp5)",
                Some("PHONEPROOF-atmp5"),
            ),
        ),
        row(
            "resend without a phone",
            &[],
            Resend,
            err(5, "Phone not found (COMMAND-2b7Hf)", Some("COMMAND-2b7Hf")),
        ),
        row(
            "resend once verified",
            &[SetOwn, Verify(Code::Sent)],
            Resend,
            err(
                9,
                "Phone already verified (COMMAND-2M9sf)",
                Some("COMMAND-2M9sf"),
            ),
        ),
        row(
            "resend within the cooldown",
            &[SetOwn],
            Resend,
            throttled(
                "Too many codes requested; try again later (PHONEPROOF-thr0t)",
                "PHONEPROOF-thr0t",
            ),
        ),
        row(
            "more codes than the window allows",
            &[
                SetOwn,
                Wait(31),
                Resend,
                Wait(31),
                Resend,
                Wait(31),
                Resend,
                Wait(31),
                Resend,
                Wait(31),
            ],
            Resend,
            throttled(
                "Too many codes requested; try again later (PHONEPROOF-thr0t)",
                "PHONEPROOF-thr0t",
            ),
        ),
        row(
            "remove without a phone",
            &[],
            Remove,
            err(5, "Phone not found (COMMAND-p6rsc)", Some("COMMAND-p6rsc")),
        ),
    ]
}

const CODE_201: &str = "ABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJA";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Surface {
    Rest,
    Grpc,
}

/// One user on one surface: its token, its number and the codes sent to it.
struct Actor<'a> {
    app: &'a TestApp,
    grpc: AuthServiceClient<Channel>,
    surface: Surface,
    token: String,
    /// National spacing on the way in, E.164 on the way out.
    phone: String,
    e164: String,
    codes_sent: usize,
    last_code: Option<String>,
}

impl Actor<'_> {
    fn header(&self, auth: Auth) -> Option<String> {
        match auth {
            Auth::Good => Some(format!("Bearer {}", self.token)),
            Auth::Missing => None,
            Auth::NotBearer => Some(format!("Basic {}", self.token)),
            Auth::BadToken => Some("Bearer not.a.token".to_owned()),
        }
    }

    async fn code(&self, code: Code) -> String {
        match code {
            Code::Sent => self.last_code.clone().expect("a code was sent"),
            Code::Literal(c) => c.to_owned(),
        }
    }

    async fn run(&mut self, step: Step, auth: Auth) -> Option<Outcome> {
        let phone = match step {
            Step::Wait(secs) => {
                self.app.advance(secs * 1000);
                return None;
            }
            Step::SetOwn => Some(self.phone.clone()),
            Step::Set(p) => Some(p.to_owned()),
            _ => None,
        };
        let code = match step {
            Step::Verify(c) => Some(self.code(c).await),
            _ => None,
        };
        let header = self.header(auth);
        let outcome = match self.surface {
            Surface::Rest => self.rest(step, header, phone, code).await,
            Surface::Grpc => self.grpc(step, header, phone, code).await,
        };
        if outcome.code == 0 && matches!(step, Step::SetOwn | Step::Resend) {
            // Delivered before the next step, so a later Wait cannot expire it undelivered.
            self.codes_sent += 1;
            self.last_code = Some(self.app.wait_for_code(&self.e164, self.codes_sent).await);
        }
        Some(outcome)
    }

    async fn rest(
        &self,
        step: Step,
        header: Option<String>,
        phone: Option<String>,
        code: Option<String>,
    ) -> Outcome {
        use reqwest::Method;
        let (method, path, body) = match step {
            Step::Get => (Method::GET, "/auth/v1/users/me/phone", None),
            Step::SetOwn | Step::Set(_) => (
                Method::PUT,
                "/auth/v1/users/me/phone",
                Some(serde_json::json!({ "phone": phone })),
            ),
            Step::Verify(_) => (
                Method::POST,
                "/auth/v1/users/me/phone/_verify",
                Some(serde_json::json!({ "code": code })),
            ),
            Step::Resend => (
                Method::POST,
                "/auth/v1/users/me/phone/_resend_verification",
                Some(serde_json::json!({})),
            ),
            Step::Remove => (Method::DELETE, "/auth/v1/users/me/phone", None),
            Step::Wait(_) => unreachable!("handled by run"),
        };
        let mut req = self
            .app
            .client
            .request(method, format!("{}{}", self.app.address, path));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let a = answer(req.send().await.expect("request sent")).await;
        if a.status.is_success() {
            let phone = matches!(step, Step::Get).then(|| {
                (
                    a.body["phone"]["phone"].as_str().map(str::to_owned),
                    a.body["phone"]["isPhoneVerified"]
                        .as_bool()
                        .unwrap_or(false),
                )
            });
            return Outcome {
                code: 0,
                message: String::new(),
                id: None,
                phone,
                retry_after: a.headers.contains_key("retry-after"),
            };
        }
        Outcome {
            code: a.body["code"].as_i64().expect("code") as i32,
            message: a.body["message"].as_str().expect("message").to_owned(),
            id: a.detail_id().map(str::to_owned),
            phone: None,
            retry_after: a.headers.contains_key("retry-after"),
        }
    }

    async fn grpc(
        &mut self,
        step: Step,
        header: Option<String>,
        phone: Option<String>,
        code: Option<String>,
    ) -> Outcome {
        fn request<T>(message: T, header: &Option<String>) -> tonic::Request<T> {
            let mut req = tonic::Request::new(message);
            if let Some(h) = header {
                req.metadata_mut()
                    .insert("authorization", h.parse().expect("ASCII"));
            }
            req
        }
        let c = &mut self.grpc;
        let result: Result<Option<(Option<String>, bool)>, tonic::Status> = match step {
            Step::Get => c
                .get_my_phone(request(pb::GetMyPhoneRequest {}, &header))
                .await
                .map(|r| {
                    let p = r.into_inner().phone.expect("phone is always set");
                    Some((Some(p.phone).filter(|p| !p.is_empty()), p.is_phone_verified))
                }),
            Step::SetOwn | Step::Set(_) => c
                .set_my_phone(request(
                    pb::SetMyPhoneRequest {
                        phone: phone.unwrap_or_default(),
                    },
                    &header,
                ))
                .await
                .map(|r| {
                    assert_change_details(r.into_inner().details);
                    None
                }),
            Step::Verify(_) => c
                .verify_my_phone(request(
                    pb::VerifyMyPhoneRequest {
                        code: code.unwrap_or_default(),
                    },
                    &header,
                ))
                .await
                .map(|r| {
                    assert_change_details(r.into_inner().details);
                    None
                }),
            Step::Resend => c
                .resend_my_phone_verification(request(
                    pb::ResendMyPhoneVerificationRequest {},
                    &header,
                ))
                .await
                .map(|r| {
                    assert_change_details(r.into_inner().details);
                    None
                }),
            Step::Remove => c
                .remove_my_phone(request(pb::RemoveMyPhoneRequest {}, &header))
                .await
                .map(|r| {
                    assert_change_details(r.into_inner().details);
                    None
                }),
            Step::Wait(_) => unreachable!("handled by run"),
        };
        match result {
            Ok(phone) => Outcome {
                code: 0,
                message: String::new(),
                id: None,
                phone,
                retry_after: false,
            },
            Err(status) => {
                let id = (!status.details().is_empty()).then(|| {
                    let details = RpcStatus::decode(status.details()).expect("google.rpc.Status");
                    assert_eq!(details.code, status.code() as i32);
                    assert_eq!(details.message, status.message());
                    let any = &details.details[0];
                    assert_eq!(any.type_url, "type.googleapis.com/zitadel.v1.ErrorDetail");
                    let detail = ErrorDetail::decode(any.value.as_slice()).expect("ErrorDetail");
                    // The detail's message is the text without the id.
                    assert_eq!(
                        format!("{} ({})", detail.message, detail.id),
                        status.message()
                    );
                    detail.id
                });
                Outcome {
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                    id,
                    phone: None,
                    retry_after: status.metadata().contains_key("retry-after"),
                }
            }
        }
    }
}

/// Mutations answer `sequence`, `change_date` and `resource_owner`, and no `creation_date`.
fn assert_change_details(details: Option<phoneproof::grpc::pb::zitadel::v1::ObjectDetails>) {
    let d = details.expect("details");
    assert!(d.sequence > 0, "{d:?}");
    assert!(d.change_date.is_some(), "{d:?}");
    assert!(d.creation_date.is_none(), "{d:?}");
    assert_eq!(d.resource_owner, ORG);
}

#[tokio::test]
async fn every_row_answers_alike_over_rest_and_grpc() {
    let app = spawn_app().await;
    let channel = Channel::from_shared(app.address.clone())
        .expect("URL")
        .connect()
        .await
        .expect("h2c connection to the same port as REST");
    let rows = table();
    for (i, row) in rows.iter().enumerate() {
        let mut outcomes = Vec::new();
        for (s, surface) in [Surface::Rest, Surface::Grpc].into_iter().enumerate() {
            let user = format!("row{i}-{surface:?}");
            let phone = format!("+41 79 555 {i:02} {s:02}");
            let mut actor = Actor {
                app: &app,
                grpc: AuthServiceClient::new(channel.clone()),
                surface,
                token: app.token(&user),
                e164: phone.replace(' ', ""),
                phone,
                codes_sent: 0,
                last_code: None,
            };
            for step in row.given {
                actor.run(*step, Auth::Good).await;
            }
            let got = actor.run(row.when, row.auth).await.expect("an answer");
            let want = &row.then;
            let context = format!("row {:?} over {surface:?}: {got:?}", row.name);
            assert_eq!(got.code, want.code, "{context}");
            assert_eq!(got.message, want.message, "{context}");
            assert_eq!(got.id.as_deref(), want.id, "{context}");
            assert_eq!(got.retry_after, want.retry_after, "{context}");
            if let Some((has_phone, verified)) = row.read {
                let expected = (has_phone.then(|| actor.e164.clone()), verified);
                assert_eq!(got.phone, Some(expected), "{context}");
            }
            outcomes.push(got);
        }
        if row.read.is_none() {
            assert_eq!(outcomes[0], outcomes[1], "row {:?}", row.name);
        }
    }
}
