//! `bearer_token` on arbitrary `Authorization` header bytes and `TokenVerifier::verify` on
//! arbitrary tokens: raw strings, tokens with an arbitrary JWT header, and tokens with
//! arbitrary claims signed with the verifier's own key (so claim validation is reached).
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use phoneproof::auth::{TokenVerifier, bearer_token};
use phoneproof::config::Settings;
use phoneproof::error::ApiError;
use phoneproof_fuzz::{JwtInput, install_panic_policy};

const SEED: [u8; 32] = [7u8; 32];

/// The claims of `corpus/bearer_jwt/seed-signed-valid`: the default local verifier accepts
/// them (until 2100).
const SIGNED_VALID_CLAIMS: &str = r#"{"iss":"phoneproof-local","aud":"phoneproof","sub":"69629023906488330","urn:zitadel:iam:user:resourceowner:id":"69629023906488334","iat":1718260000,"nbf":1718260000,"exp":4102444800}"#;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn verifier() -> &'static TokenVerifier {
    static V: OnceLock<TokenVerifier> = OnceLock::new();
    V.get_or_init(|| {
        // The seed's claims run to 2100: the lifetime cap (tested in tests/api/auth.rs) would
        // refuse every signed input before the claim parsing this target explores.
        let mut auth = Settings::default().auth;
        auth.max_token_lifetime = std::time::Duration::from_secs(200 * 365 * 86_400);
        TokenVerifier::new(&auth, &SEED).expect("verifier")
    })
}

/// The verifier's own signing key, to sign arbitrary claims.
fn signing_key() -> &'static EncodingKey {
    static K: OnceLock<EncodingKey> = OnceLock::new();
    K.get_or_init(|| {
        let der = SigningKey::from_bytes(&SEED).to_pkcs8_der().expect("pkcs8");
        EncodingKey::from_ed_der(der.as_bytes())
    })
}

/// `{"alg":"EdDSA","typ":"JWT"}` and these claim bytes, signed with the verifier's key.
fn sign_claims(claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        B64.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#),
        B64.encode(claims)
    );
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), signing_key(), Algorithm::EdDSA)
        .expect("Ed25519 signing");
    format!("{signing_input}.{sig}")
}

fn verify(token: &str, input: &JwtInput) {
    match runtime().block_on(verifier().verify(token)) {
        Ok(user) => {
            for id in [user.user_id.as_ref(), user.resource_owner.as_ref()] {
                assert!(
                    !id.is_empty()
                        && id.chars().count() <= 200
                        && !id.chars().any(char::is_control),
                    "verify accepted an id {id:?} from {token:?} ({input:?})"
                );
            }
        }
        Err(e) => assert_auth_error(&e, input),
    }
}

fn assert_auth_error(e: &ApiError, input: &JwtInput) {
    assert!(
        matches!(
            e,
            ApiError::TokenInvalid | ApiError::AuthHeaderMissing | ApiError::AuthHeaderInvalid
        ),
        "auth answered {e:?} for {input:?}"
    );
}

fuzz_target!(
    init: {
        install_panic_policy();
        let _ = (runtime(), verifier(), signing_key());
        // A token the verifier issued itself must pass (else the target checks nothing).
        let token = verifier().issue("fuzz-user", "1", std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64).unwrap();
        runtime().block_on(verifier().verify(&token)).expect("own token verifies");
        // And so must the claims of the `signed-valid` seed, signed the way the target signs.
        let signed = sign_claims(SIGNED_VALID_CLAIMS.as_bytes());
        runtime().block_on(verifier().verify(&signed)).expect("signed seed claims verify");
    },
    |input: JwtInput| {
        match &input {
            JwtInput::Header(bytes) => {
                match bearer_token(Some(&bytes.0)) {
                    Ok(token) => {
                        assert!(!token.is_empty() && token.trim() == token, "token {token:?}");
                        verify(token, &input);
                    }
                    Err(e) => assert_auth_error(&e, &input),
                }
                verify(&String::from_utf8_lossy(bytes), &input);
            }
            JwtInput::HeaderJson(header) => {
                let token = format!("{}.e30.AAAA", B64.encode(&header.0));
                verify(&token, &input);
            }
            JwtInput::SignedClaims(claims) => verify(&sign_claims(claims), &input),
        }
    }
);
