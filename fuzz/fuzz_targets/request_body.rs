//! The request body decoders the routes use, with an arbitrary content type and body.
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use phoneproof::domain::{CODE_LENGTH_MESSAGE, PHONE_LENGTH_MESSAGE, PHONE_PREFIX_MESSAGE};
use phoneproof::error::ApiError;
use phoneproof::routes::body::{decode_resend, decode_set_phone, decode_verify_code};
use phoneproof_fuzz::{
    BodyInput, BodyOp, assert_decode_error, assert_e164, assert_status_shape, code_candidates,
    error_texts, install_panic_policy, strip_position,
};

/// Every message (position stripped) a decoding error can carry: the fixed texts, and the
/// JSON-problem templates as the decoder words them (learned from three known-bad bodies).
fn known_messages() -> &'static HashSet<String> {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut known: HashSet<String> = [
            CODE_LENGTH_MESSAGE,
            PHONE_LENGTH_MESSAGE,
            PHONE_PREFIX_MESSAGE,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        let ct = Some("application/json");
        for body in [&b"{"[..], b"[]", b"nope", b"{\"code\": 5}"] {
            if let Err(e) = decode_verify_code(ct, body) {
                for t in error_texts(&e.body()) {
                    known.insert(strip_position(&t).to_owned());
                }
            }
        }
        for e in [
            ApiError::UnsupportedMediaType,
            phoneproof::domain::DomainError::PhoneInvalid.into(),
        ] {
            for t in error_texts(&e.body()) {
                known.insert(t);
            }
        }
        known
    })
}

fn check_error(err: &ApiError, input: &BodyInput) {
    assert_decode_error(err, input);
    let body = err.body();
    assert_status_shape(&body, input);
    let texts = error_texts(&body);
    let known = known_messages();
    for t in &texts {
        // A message is one of a fixed set of templates, so it can echo nothing of the body.
        assert!(
            known.contains(strip_position(t)),
            "unexpected error text {t:?} for {input:?}"
        );
    }
    if input.op == BodyOp::VerifyCode {
        for code in code_candidates(&input.body) {
            if code.chars().count() <= 3 || known.iter().any(|k| k.contains(code.as_str())) {
                continue;
            }
            for t in &texts {
                assert!(
                    !strip_position(t).contains(code.as_str()),
                    "the code {code:?} is echoed in the error {body} for {input:?}"
                );
            }
        }
    }
}

fuzz_target!(
    init: {
        install_panic_policy();
        let _ = known_messages();
    },
    |input: BodyInput| {
        let ct = input.content_type.as_str();
        match input.op {
            BodyOp::SetPhone => match decode_set_phone(ct, &input.body) {
                Ok(phone) => assert_e164(phone.as_ref(), &input),
                Err(e) => check_error(&e, &input),
            },
            BodyOp::VerifyCode => match decode_verify_code(ct, &input.body) {
                Ok(code) => {
                    let n = code.expose().chars().count();
                    assert!((1..=200).contains(&n), "accepted a code of {n} runes: {input:?}");
                    assert_eq!(format!("{code:?}"), "VerificationCode(***)");
                }
                Err(e) => check_error(&e, &input),
            },
            BodyOp::Resend => {
                if let Err(e) = decode_resend(ct, &input.body) {
                    check_error(&e, &input);
                }
            }
        }
    }
);
