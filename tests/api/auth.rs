//! Bearer tokens: local Ed25519 tokens and an issuer's JWKS (served by wiremock).
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use phoneproof::config::Settings;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::crash::wait_for_requests;
use crate::helpers::*;

const RO_CLAIM: &str = "urn:zitadel:iam:user:resourceowner:id";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(iss: &str, aud: &str, exp: i64, nbf: i64) -> Value {
    json!({"iss": iss, "aud": aud, "sub": "user-1", RO_CLAIM: ORG, "iat": now(), "exp": exp, "nbf": nbf})
}

const LOCAL_SEED: [u8; 32] = [5; 32];

/// Local tokens signed with `LOCAL_SEED`, so a test can sign its own claims.
fn local_auth(s: &mut Settings) {
    s.auth.mode = phoneproof::config::AuthMode::Local {
        signing_key: Some(LOCAL_SEED.into()),
        token_ttl: std::time::Duration::from_secs(3600),
    };
}

fn local_key() -> EncodingKey {
    let der = SigningKey::from_bytes(&LOCAL_SEED).to_pkcs8_der().unwrap();
    EncodingKey::from_ed_der(der.as_bytes())
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

#[tokio::test]
async fn local_tokens_are_checked_for_time_issuer_audience_signature_and_algorithm() {
    let app = spawn_app_with(local_auth).await;
    let key = local_key();
    let good = claims("phoneproof-local", "phoneproof", now() + 600, now() - 5);
    assert_eq!(
        app.get_phone(&sign(Algorithm::EdDSA, None, &good, &key))
            .await
            .status,
        200
    );

    let other_key = EncodingKey::from_ed_der(
        SigningKey::from_bytes(&[9; 32])
            .to_pkcs8_der()
            .unwrap()
            .as_bytes(),
    );
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64URL.encode(good.to_string())
    );
    let mut no_owner = good.clone();
    no_owner.as_object_mut().unwrap().remove(RO_CLAIM);
    let cases = [
        (
            "expired",
            sign(
                Algorithm::EdDSA,
                None,
                &claims("phoneproof-local", "phoneproof", now() - 10, now() - 600),
                &key,
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::EdDSA,
                None,
                &claims("phoneproof-local", "phoneproof", now() + 600, now() + 300),
                &key,
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::EdDSA,
                None,
                &claims("someone-else", "phoneproof", now() + 600, now()),
                &key,
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::EdDSA,
                None,
                &claims("phoneproof-local", "another-api", now() + 600, now()),
                &key,
            ),
        ),
        (
            "bad signature",
            sign(Algorithm::EdDSA, None, &good, &other_key),
        ),
        ("alg none", unsigned),
        (
            "HS256 with a guessable secret",
            sign(
                Algorithm::HS256,
                None,
                &good,
                &EncodingKey::from_secret(b"phoneproof"),
            ),
        ),
        (
            "no resource owner",
            sign(Algorithm::EdDSA, None, &no_owner, &key),
        ),
    ];
    for (what, token) in cases {
        let a = app.get_phone(&token).await;
        assert_eq!(a.status, 401, "{what}");
        assert_error(&a, 401, 16, "AUTH-7fs1e", "Errors.Token.Invalid");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_token_command_prints_a_token_the_service_accepts_and_refuses_without_local_auth() {
    let app = spawn_app().await;
    let bin = env!("CARGO_BIN_EXE_phoneproof");
    let out = std::process::Command::new(bin)
        .args(["token", "--user", "cli-user", "--org", "4242"])
        .env("PHONEPROOF_DATA_DIR", app.dir.path())
        .env("PHONEPROOF_DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let a = app.get_phone(&token).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["details"]["resourceOwner"], "4242");

    let out = std::process::Command::new(bin)
        .args(["token", "--user", "u", "--org", "o"])
        .env("PHONEPROOF_DATA_DIR", app.dir.path())
        .env("PHONEPROOF_AUTH_MODE", "jwks")
        .env("PHONEPROOF_AUTH_JWKS_URL", "http://127.0.0.1:9/keys")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("local auth"));
    app.stop().await;
}

#[tokio::test]
async fn bad_configuration_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phoneproof"))
        .arg("serve")
        .env("PHONEPROOF_DATA_DIR", dir.path())
        .env("PHONEPROOF_CODE_MAX_ATTEMPTS", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("code.max_attempts") && err.contains("many"),
        "{err}"
    );
}

fn jwks(with_ed: Option<&SigningKey>) -> Value {
    let fixtures: Value =
        serde_json::from_str(include_str!("../fixtures/public-jwks.json")).unwrap();
    let mut keys = vec![fixtures["rsa"].clone(), fixtures["ec"].clone()];
    if let Some(sk) = with_ed {
        keys.push(
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA", "use": "sig",
                         "x": B64URL.encode(sk.verifying_key().to_bytes())}),
        );
    }
    json!({ "keys": keys })
}

#[tokio::test]
async fn jwks_tokens_in_rs256_es256_and_eddsa_are_accepted_without_a_fetch_per_request() {
    let issuer = MockServer::start().await;
    let ed = SigningKey::from_bytes(&[7; 32]);
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(Some(&ed))))
        .expect(1)
        .mount(&issuer)
        .await;
    let app = spawn_app_with(jwks_settings(&issuer, 10)).await;
    let c = claims(
        "https://issuer.example",
        "phoneproof-api",
        now() + 600,
        now(),
    );
    let rsa = EncodingKey::from_rsa_der(include_bytes!("../fixtures/rsa-pkcs1.der"));
    let ec = EncodingKey::from_ec_der(include_bytes!("../fixtures/ec-p256-pkcs8.der"));
    let edk = EncodingKey::from_ed_der(ed.to_pkcs8_der().unwrap().as_bytes());
    for _ in 0..5 {
        assert_eq!(
            app.get_phone(&sign(Algorithm::RS256, Some("rsa-1"), &c, &rsa))
                .await
                .status,
            200
        );
        assert_eq!(
            app.get_phone(&sign(Algorithm::ES256, Some("ec-1"), &c, &ec))
                .await
                .status,
            200
        );
        assert_eq!(
            app.get_phone(&sign(Algorithm::EdDSA, Some("ed-1"), &c, &edk))
                .await
                .status,
            200
        );
    }
    // A key used with another algorithm than its own is refused.
    let a = app
        .get_phone(&sign(Algorithm::RS384, Some("rsa-1"), &c, &rsa))
        .await;
    assert_error(&a, 401, 16, "AUTH-7fs1e", "Errors.Token.Invalid");
    app.stop().await;
    issuer.verify().await;
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_keys_once() {
    let issuer = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(None)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&issuer)
        .await;
    let app = spawn_app_with(jwks_settings(&issuer, 0)).await;
    // The issuer rotates in a new Ed25519 key.
    let ed = SigningKey::from_bytes(&[8; 32]);
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(Some(&ed))))
        .expect(1)
        .mount(&issuer)
        .await;
    let c = claims(
        "https://issuer.example",
        "phoneproof-api",
        now() + 600,
        now(),
    );
    let edk = EncodingKey::from_ed_der(ed.to_pkcs8_der().unwrap().as_bytes());
    for _ in 0..3 {
        assert_eq!(
            app.get_phone(&sign(Algorithm::EdDSA, Some("ed-1"), &c, &edk))
                .await
                .status,
            200
        );
    }
    app.stop().await;
    issuer.verify().await;
}

fn jwks_settings(issuer: &MockServer, min_refresh_secs: u64) -> impl FnOnce(&mut Settings) {
    let url = format!("{}/keys", issuer.uri());
    move |s| {
        s.auth.mode = phoneproof::config::AuthMode::Jwks {
            url: url.parse().expect("a URL"),
            min_refresh: std::time::Duration::from_secs(min_refresh_secs),
        };
        s.auth.issuer = "https://issuer.example".into();
        s.auth.audience = "phoneproof-api".into();
    }
}

/// The issuer's keys at start: RSA and EC, served once.
async fn mount_start_keys(issuer: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(None)))
        .up_to_n_times(1)
        .expect(1)
        .mount(issuer)
        .await;
}

/// Then the issuer rotates in an Ed25519 key and answers slowly.
async fn mount_rotated_keys(issuer: &MockServer, ed: &SigningKey, delay: Duration) {
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(jwks(Some(ed)))
                .set_delay(delay),
        )
        .expect(1)
        .mount(issuer)
        .await;
}

fn issuer_claims() -> Value {
    claims(
        "https://issuer.example",
        "phoneproof-api",
        now() + 600,
        now(),
    )
}

#[tokio::test]
async fn a_slow_jwks_refresh_does_not_hold_up_tokens_signed_with_known_keys() {
    let issuer = MockServer::start().await;
    mount_start_keys(&issuer).await;
    let app = spawn_app_with(jwks_settings(&issuer, 0)).await;
    let ed = SigningKey::from_bytes(&[8; 32]);
    mount_rotated_keys(&issuer, &ed, Duration::from_secs(2)).await;
    let edk = EncodingKey::from_ed_der(ed.to_pkcs8_der().unwrap().as_bytes());
    let rsa = EncodingKey::from_rsa_der(include_bytes!("../fixtures/rsa-pkcs1.der"));
    let rotated = sign(Algorithm::EdDSA, Some("ed-1"), &issuer_claims(), &edk);
    let known = sign(Algorithm::RS256, Some("rsa-1"), &issuer_claims(), &rsa);

    let (slow, (fast, fast_took)) = tokio::join!(app.get_phone(&rotated), async {
        // The unknown kid's refresh has reached the issuer and waits for its answer.
        wait_for_requests(&issuer, 2).await;
        let started = Instant::now();
        let a = app.get_phone(&known).await;
        (a, started.elapsed())
    });
    assert_eq!(
        slow.status, 200,
        "the rotated key is found after the refresh"
    );
    assert_eq!(fast.status, 200);
    assert!(
        fast_took < Duration::from_millis(1_000),
        "a token with a known key waited {fast_took:?} for the JWKS refresh"
    );
    app.stop().await;
    issuer.verify().await;
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_jwks_fetch() {
    let issuer = MockServer::start().await;
    mount_start_keys(&issuer).await;
    // No rate limit: only the coalescing keeps this to one fetch.
    let app = spawn_app_with(jwks_settings(&issuer, 0)).await;
    let ed = SigningKey::from_bytes(&[8; 32]);
    mount_rotated_keys(&issuer, &ed, Duration::from_millis(500)).await;
    let edk = EncodingKey::from_ed_der(ed.to_pkcs8_der().unwrap().as_bytes());
    let rotated = sign(Algorithm::EdDSA, Some("ed-1"), &issuer_claims(), &edk);

    let answers = futures::future::join_all((0..8).map(|_| app.get_phone(&rotated))).await;
    for a in answers {
        assert_eq!(a.status, 200, "{}", a.body);
    }
    app.stop().await;
    issuer.verify().await;
}

#[tokio::test]
async fn unknown_kids_refresh_the_keys_at_most_once_per_min_refresh() {
    let issuer = MockServer::start().await;
    // Every fetch would match, so `expect` counts them all.
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(None)))
        .expect(1)
        .mount(&issuer)
        .await;
    let app = spawn_app_with(jwks_settings(&issuer, 3_600)).await;
    let stranger = EncodingKey::from_ed_der(
        SigningKey::from_bytes(&[9; 32])
            .to_pkcs8_der()
            .unwrap()
            .as_bytes(),
    );
    for kid in ["gone-1", "gone-2", "gone-3"] {
        let a = app
            .get_phone(&sign(
                Algorithm::EdDSA,
                Some(kid),
                &issuer_claims(),
                &stranger,
            ))
            .await;
        assert_error(&a, 401, 16, "AUTH-7fs1e", "Errors.Token.Invalid");
    }
    app.stop().await;
    // Only the fetch at start: the keys were loaded less than `min_refresh` ago.
    issuer.verify().await;
}

/// Verified tokens are cached (a hash instead of a signature check), but never past `exp`.
#[tokio::test]
async fn a_cached_token_is_refused_once_it_expires() {
    let app = spawn_app_with(local_auth).await;
    let exp = now() + 2;
    let token = sign(
        Algorithm::EdDSA,
        None,
        &claims("phoneproof-local", "phoneproof", exp, now() - 5),
        &local_key(),
    );
    for _ in 0..3 {
        assert_eq!(app.get_phone(&token).await.status, 200);
    }
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = app.get_phone(&token).await;
    assert_error(&a, 401, 16, "AUTH-7fs1e", "Errors.Token.Invalid");
    app.stop().await;
}

/// A key the issuer withdrew takes its tokens' cached answers with it.
#[tokio::test]
async fn a_cached_token_is_refused_once_its_key_leaves_the_key_set() {
    let issuer = MockServer::start().await;
    mount_start_keys(&issuer).await;
    let app = spawn_app_with(jwks_settings(&issuer, 0)).await;
    let rsa = EncodingKey::from_rsa_der(include_bytes!("../fixtures/rsa-pkcs1.der"));
    let old = sign(Algorithm::RS256, Some("rsa-1"), &issuer_claims(), &rsa);
    assert_eq!(app.get_phone(&old).await.status, 200);
    // The issuer rotates: only the Ed25519 key is left.
    let ed = SigningKey::from_bytes(&[6; 32]);
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA", "use": "sig",
             "x": B64URL.encode(ed.verifying_key().to_bytes())}
        ]})))
        .mount(&issuer)
        .await;
    let edk = EncodingKey::from_ed_der(ed.to_pkcs8_der().unwrap().as_bytes());
    let new = sign(Algorithm::EdDSA, Some("ed-1"), &issuer_claims(), &edk);
    assert_eq!(
        app.get_phone(&new).await.status,
        200,
        "the refresh found the new key"
    );
    let a = app.get_phone(&old).await;
    assert_error(&a, 401, 16, "AUTH-7fs1e", "Errors.Token.Invalid");
    app.stop().await;
}

/// Before: `crit` was ignored, an `exp` in year 9999 accepted, and `sub` or the owner claim
/// could be whitespace, invisible characters or 800 bytes long.
#[tokio::test]
async fn tokens_with_crit_endless_lifetimes_or_unreadable_ids_are_refused() {
    let app = spawn_app_with(local_auth).await;
    let key = local_key();
    let good = claims("phoneproof-local", "phoneproof", now() + 600, now() - 5);
    let signed = |c: &Value| sign(Algorithm::EdDSA, None, c, &key);
    assert_eq!(app.get_phone(&signed(&good)).await.status, 200);
    let with = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        c
    };
    let mut crit = Header::new(Algorithm::EdDSA);
    crit.crit = Some(vec!["exp".into()]);
    let no_iat = {
        let mut c = with("exp", json!(now() + 25 * 3600));
        c.as_object_mut().unwrap().remove("iat");
        c
    };
    let cases = [
        ("crit", jsonwebtoken::encode(&crit, &good, &key).unwrap()),
        (
            "exp in 9999",
            signed(&with("exp", json!(253_402_300_799_i64))),
        ),
        (
            "25 h from iat",
            signed(&{
                let mut c = with("iat", json!(now() - 3600));
                c["exp"] = json!(now() + 24 * 3600);
                c
            }),
        ),
        ("25 h from now, no iat", signed(&no_iat)),
        ("whitespace sub", signed(&with("sub", json!(" \t ")))),
        (
            "invisible sub",
            signed(&with("sub", json!("\u{200B}\u{200B}"))),
        ),
        (
            "sub with a bidi override",
            signed(&with("sub", json!("adm\u{202E}nimda"))),
        ),
        ("800-byte sub", signed(&with("sub", json!("u".repeat(800))))),
        (
            "invisible owner",
            signed(&with(RO_CLAIM, json!("\u{FEFF}"))),
        ),
    ];
    for (name, token) in cases {
        let a = app.get_phone(&token).await;
        assert_eq!(a.status, 401, "{name}: {}", a.body);
        assert_eq!(a.detail_id(), Some("AUTH-7fs1e"), "{name}");
    }
    app.stop().await;
}
