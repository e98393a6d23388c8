//! Bearer JWT access tokens: local Ed25519 tokens or an issuer's JWKS, and the extractor
//! that turns a request into an `AuthenticatedUser`.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::{FromRequest, Request, RequestBody, http::header};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::config::{AuthMode, AuthSettings};
use crate::domain::{ResourceOwner, UserId};
use crate::error::ApiError;
use crate::i18n::{self, Language, Negotiator};

/// What a valid token says about its bearer.
#[derive(Debug, Clone)]
pub struct Claims {
    pub user_id: UserId,
    pub resource_owner: ResourceOwner,
    /// The token's language claim, when it names a shipped language (ZITADEL's tokens carry
    /// the user's profile language as it was at login).
    pub language: Option<Language>,
}

impl Claims {
    /// The caller of a request with these `Accept-Language` values (header fields or gRPC
    /// metadata entries).
    pub fn speaking<'a>(
        self,
        negotiator: &Negotiator,
        accept_language: impl IntoIterator<Item = &'a [u8]>,
    ) -> AuthenticatedUser {
        AuthenticatedUser {
            language: negotiator.pick(self.language, accept_language),
            user_id: self.user_id,
            resource_owner: self.resource_owner,
        }
    }
}

/// The caller, as the token says, and the language to answer and text them in.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub user_id: UserId,
    pub resource_owner: ResourceOwner,
    pub language: Language,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("the local signing key is not a valid Ed25519 seed")]
    BadSigningKey,
    #[error("token issuing needs auth.mode = local (it is jwks)")]
    NotLocal,
}

/// The issuer's keys by `kid`, each with the one algorithm it may sign with.
type KeySet = HashMap<String, Arc<(DecodingKey, Algorithm)>>;

enum Keys {
    Local {
        decoding: DecodingKey,
        encoding: EncodingKey,
    },
    Jwks {
        url: String,
        client: reqwest::Client,
        /// Held only to look a key up or to swap in a fetched set, never across a fetch,
        /// so tokens with known keys are checked while a refresh waits on the issuer.
        keys: RwLock<KeySet>,
        /// One fetch at a time; holds when the last one ended (the rate limit).
        refresh: Mutex<Option<Instant>>,
        /// Fetches ended, successful or not. A caller that reads it before its lookup and
        /// finds it moved once its turn to refresh comes knows another caller's fetch
        /// answered it, so a burst of unknown kids makes one fetch.
        fetches: AtomicU64,
        min_refresh: Duration,
    },
}

/// Tokens already verified, keyed by the SHA-256 of the token: a hash costs far less than
/// the signature check it saves on every request of a client that reuses its token.
#[derive(Default)]
struct VerifiedTokens {
    /// Bumped whenever the key set changes, under the lock: a check that began with the old
    /// keys cannot cache its answer after the clear.
    generation: u64,
    entries: HashMap<[u8; 32], (Claims, i64)>,
}

/// At most this many cached tokens; expired ones are swept first when it is full.
const VERIFIED_TOKENS_MAX: usize = 10_000;

/// Checks tokens; built once at start so the request path parses no keys.
pub struct TokenVerifier {
    verified: RwLock<VerifiedTokens>,
    keys: Keys,
    issuer: String,
    audience: String,
    resource_owner_claim: String,
    language_claim: String,
    /// One validation per accepted algorithm, built once rather than on every request.
    validations: Vec<(Algorithm, Validation)>,
    token_ttl_secs: u64,
    max_lifetime_secs: i64,
}

fn validation(alg: Algorithm, issuer: &str, audience: &str, leeway: u64) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    v.validate_nbf = true;
    v.leeway = leeway;
    v
}

/// Which algorithm a JWK is for; only RS256, ES256 and EdDSA are accepted.
fn jwk_algorithm(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

impl TokenVerifier {
    pub fn new(settings: &AuthSettings, signing_seed: &[u8; 32]) -> Result<Self, AuthSetupError> {
        let mut token_ttl_secs = 0;
        let keys = match &settings.mode {
            AuthMode::Local { token_ttl, .. } => {
                token_ttl_secs = token_ttl.as_secs();
                let sk = SigningKey::from_bytes(signing_seed);
                let der = sk
                    .to_pkcs8_der()
                    .map_err(|_| AuthSetupError::BadSigningKey)?;
                let public = sk.verifying_key().to_bytes();
                Keys::Local {
                    encoding: EncodingKey::from_ed_der(der.as_bytes()),
                    decoding: DecodingKey::from_ed_der(&public),
                }
            }
            AuthMode::Jwks { url, min_refresh } => Keys::Jwks {
                url: url.to_string(),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("a TLS backend is compiled in"),
                keys: RwLock::new(HashMap::new()),
                refresh: Mutex::new(None),
                fetches: AtomicU64::new(0),
                min_refresh: *min_refresh,
            },
        };
        Ok(Self {
            verified: RwLock::default(),
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            resource_owner_claim: settings.resource_owner_claim.clone(),
            language_claim: settings.language_claim.clone(),
            validations: [Algorithm::EdDSA, Algorithm::RS256, Algorithm::ES256]
                .into_iter()
                .map(|alg| {
                    let v = validation(
                        alg,
                        &settings.issuer,
                        &settings.audience,
                        settings.leeway_secs,
                    );
                    (alg, v)
                })
                .collect(),
            token_ttl_secs,
            max_lifetime_secs: settings.max_token_lifetime.as_secs() as i64,
        })
    }

    /// Prints a local token; refused when auth is not local.
    pub fn issue(&self, user: &str, org: &str, now_secs: i64) -> Result<String, AuthSetupError> {
        self.issue_speaking(user, org, None, now_secs)
    }

    /// As `issue`, with `language` (a language tag such as `de`) in the language claim.
    pub fn issue_speaking(
        &self,
        user: &str,
        org: &str,
        language: Option<&str>,
        now_secs: i64,
    ) -> Result<String, AuthSetupError> {
        let Keys::Local { encoding, .. } = &self.keys else {
            return Err(AuthSetupError::NotLocal);
        };
        let mut claims = serde_json::Map::new();
        if let Some(language) = language {
            claims.insert(self.language_claim.clone(), language.into());
        }
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("sub".into(), user.into());
        claims.insert(self.resource_owner_claim.clone(), org.into());
        claims.insert("iat".into(), now_secs.into());
        claims.insert("nbf".into(), now_secs.into());
        claims.insert("exp".into(), (now_secs + self.token_ttl_secs as i64).into());
        Ok(
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, encoding)
                .expect("Ed25519 signing does not fail"),
        )
    }

    /// Loads the issuer's keys at start; a failure is logged, and the next token retries.
    pub async fn warm(&self) {
        if let Keys::Jwks { .. } = &self.keys
            && let Err(e) = self.refresh_jwks(None).await
        {
            tracing::warn!(error = %e, "could not load the JWKS at start; will retry on the first token");
        }
    }

    /// Fetches the JWKS and swaps it in. `seen` is the fetch count the caller read before
    /// its failed lookup: if a fetch has ended since, or one ended less than `min_refresh`
    /// ago, there is nothing to do. `None` fetches regardless (at start).
    async fn refresh_jwks(&self, seen: Option<u64>) -> Result<(), String> {
        let Keys::Jwks {
            url,
            client,
            keys,
            refresh,
            fetches,
            min_refresh,
        } = &self.keys
        else {
            return Ok(());
        };
        let mut last = refresh.lock().await;
        if let Some(seen) = seen {
            if fetches.load(Ordering::Acquire) != seen {
                return Ok(());
            }
            if last.is_some_and(|at| at.elapsed() < *min_refresh) {
                return Ok(());
            }
        }
        let fetched = fetch_key_set(client, url).await;
        // Stamped when the fetch ends, failed ones too: a down issuer is asked no more often
        // than a healthy one, and a fetch abandoned by a gone caller stamps nothing.
        *last = Some(Instant::now());
        let result = fetched.map(|set| {
            tracing::info!(keys = set.len(), "JWKS loaded");
            *keys.write().unwrap_or_else(PoisonError::into_inner) = set;
            // A key that left the set takes its tokens' cached answers with it.
            let mut verified = self
                .verified
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            verified.generation += 1;
            verified.entries.clear();
        });
        fetches.fetch_add(1, Ordering::Release);
        result
    }

    async fn jwks_key(&self, kid: &str) -> Option<Arc<(DecodingKey, Algorithm)>> {
        let Keys::Jwks { keys, fetches, .. } = &self.keys else {
            return None;
        };
        let lookup = || {
            keys.read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(kid)
                .cloned()
        };
        // Read before the lookup, so a set swapped in after it counts as news.
        let seen = fetches.load(Ordering::Acquire);
        if let Some(found) = lookup() {
            return Some(found);
        }
        // An unknown kid may be a rotated key: refresh (rate-limited) and look again.
        if let Err(e) = self.refresh_jwks(Some(seen)).await {
            tracing::warn!(error = %e, "JWKS refresh failed");
        }
        lookup()
    }

    /// Verifies a bearer token and returns what it says; a token seen before is answered from
    /// the cache until its `exp`, never after.
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        let generation = {
            let verified = self.verified.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((user, exp)) = verified.entries.get(&digest)
                && now < *exp
            {
                return Ok(user.clone());
            }
            verified.generation
        };
        let (user, exp) = self.verify_signed(token).await?;
        let mut verified = self
            .verified
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if verified.generation == generation {
            if verified.entries.len() >= VERIFIED_TOKENS_MAX {
                verified.entries.retain(|_, (_, exp)| now < *exp);
                if verified.entries.len() >= VERIFIED_TOKENS_MAX {
                    verified.entries.clear();
                }
            }
            verified.entries.insert(digest, (user.clone(), exp));
        }
        Ok(user)
    }

    /// The full check: key, algorithm, signature and claims.
    async fn verify_signed(&self, token: &str) -> Result<(Claims, i64), ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::TokenInvalid)?;
        // `crit` names extensions the verifier must understand; we understand none.
        if header.crit.is_some() {
            return Err(ApiError::TokenInvalid);
        }
        // The local key is borrowed; a JWKS key is shared out of the key set, unlocked.
        let fetched;
        let (key, alg) = match &self.keys {
            Keys::Local { decoding, .. } => (decoding, Algorithm::EdDSA),
            Keys::Jwks { .. } => {
                let kid = header.kid.as_deref().ok_or(ApiError::TokenInvalid)?;
                fetched = self.jwks_key(kid).await.ok_or(ApiError::TokenInvalid)?;
                (&fetched.0, fetched.1)
            }
        };
        if header.alg != alg {
            return Err(ApiError::TokenInvalid);
        }
        let validation = self
            .validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
            .ok_or(ApiError::TokenInvalid)?;
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, validation)
            .map_err(|_| ApiError::TokenInvalid)?;
        let claim = |name: &str| data.claims.get(name).and_then(Value::as_str);
        let user_id = claim("sub")
            .and_then(UserId::parse)
            .ok_or(ApiError::TokenInvalid)?;
        let resource_owner = claim(&self.resource_owner_claim)
            .and_then(ResourceOwner::parse)
            .ok_or(ApiError::TokenInvalid)?;
        // Required by the validation, so present and numeric here.
        let exp = data
            .claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| exp as i64)
            .ok_or(ApiError::TokenInvalid)?;
        // A token valid for years is a leaked credential that never dies.
        let issued = match data.claims.get("iat").and_then(Value::as_f64) {
            Some(iat) => iat as i64,
            None => chrono::Utc::now().timestamp(),
        };
        if exp.saturating_sub(issued) > self.max_lifetime_secs {
            return Err(ApiError::TokenInvalid);
        }
        // A claim naming no shipped language ("und", "fi") counts as none.
        let language = claim(&self.language_claim).and_then(|tag| i18n::negotiate(tag.as_bytes()));
        Ok((
            Claims {
                user_id,
                resource_owner,
                language,
            },
            exp,
        ))
    }
}

/// The issuer's usable keys: those with a `kid` and an accepted algorithm.
async fn fetch_key_set(client: &reqwest::Client, url: &str) -> Result<KeySet, String> {
    let set: JwkSet = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("fetching JWKS: {e}"))?
        .json()
        .await
        .map_err(|e| format!("decoding JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), jwk_algorithm(&jwk.algorithm))
        else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid, Arc::new((key, alg)));
        }
    }
    Ok(keys)
}

/// The token of the one `authorization` value a request (REST header or gRPC metadata)
/// carries. Two values are refused: which one would count is a guess a proxy and we could
/// make differently.
pub fn single_bearer_token<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<&'a str, ApiError> {
    let mut values = values.into_iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::AuthHeaderInvalid);
    }
    bearer_token(first)
}

/// Splits `Authorization: Bearer <token>`; the scheme is case-insensitive.
pub fn bearer_token(header_value: Option<&[u8]>) -> Result<&str, ApiError> {
    let raw = header_value.ok_or(ApiError::AuthHeaderMissing)?;
    let text = std::str::from_utf8(raw).map_err(|_| ApiError::AuthHeaderInvalid)?;
    let (scheme, token) = text.split_once(' ').ok_or(ApiError::AuthHeaderInvalid)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::AuthHeaderInvalid);
    }
    Ok(token)
}

impl<'a> FromRequest<'a> for AuthenticatedUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let verifier = req
            .data::<Arc<TokenVerifier>>()
            .expect("the token verifier is attached to every route");
        let negotiator = req
            .data::<Negotiator>()
            .expect("the language negotiator is attached to every route");
        let values = req.headers().get_all(header::AUTHORIZATION);
        let token = single_bearer_token(values.iter().map(|v| v.as_bytes()))?;
        let claims = verifier.verify(token).await?;
        let accept_language = req.headers().get_all(header::ACCEPT_LANGUAGE);
        Ok(claims.speaking(negotiator, accept_language.iter().map(|v| v.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer_token(None), Err(ApiError::AuthHeaderMissing));
        assert_eq!(bearer_token(Some(b"Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some(b"bearer abc")), Ok("abc"));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer  ",
            b"abc",
            b"\xff\xfe",
        ] {
            assert_eq!(
                bearer_token(Some(bad)),
                Err(ApiError::AuthHeaderInvalid),
                "{bad:?}"
            );
        }
    }
}
