//! `PhoneNumber::parse` and `validate_phone_field` on arbitrary text: both as UTF-8 when the
//! bytes are UTF-8, and lossily decoded otherwise (what a JSON string field can carry).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phoneproof::domain::{
    DomainError, PHONE_LENGTH_MESSAGE, PHONE_PREFIX_MESSAGE, PhoneNumber, mask_phone,
    validate_phone_field,
};
use phoneproof_fuzz::{assert_e164, install_panic_policy};

fn check(raw: &str) {
    // The field checks, in the contract's order, as an independent oracle.
    let runes = raw.chars().count();
    let want = if runes == 0 || runes > 50 {
        Err(PHONE_LENGTH_MESSAGE)
    } else if !raw.starts_with('+') {
        Err(PHONE_PREFIX_MESSAGE)
    } else {
        Ok(())
    };
    assert_eq!(
        validate_phone_field(raw),
        want,
        "validate_phone_field({raw:?})"
    );

    match PhoneNumber::parse(raw) {
        Ok(phone) => {
            let e164 = phone.as_ref();
            assert_e164(e164, &raw);
            assert_eq!(phone.to_string(), e164);
            let again = PhoneNumber::parse(e164);
            assert_eq!(
                again.as_ref(),
                Ok(&phone),
                "parsing {raw:?} gave {e164:?}, which parses to {again:?}"
            );
            let masked = mask_phone(e164);
            assert_eq!(masked.chars().count(), e164.chars().count());
            assert_eq!(phone.masked(), masked);
        }
        Err(e) => assert_eq!(e, DomainError::PhoneInvalid, "parse({raw:?})"),
    }
}

fuzz_target!(
    init: {
        install_panic_policy();
    },
    |data: &[u8]| {
        match std::str::from_utf8(data) {
            Ok(s) => check(s),
            Err(_) => check(&String::from_utf8_lossy(data)),
        }
    }
);
