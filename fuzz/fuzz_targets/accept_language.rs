//! `i18n::negotiate` on arbitrary `Accept-Language` bytes (and token language claims): never a
//! panic, and a language it picks is one the value names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phoneproof::i18n::{Language, Negotiator, negotiate};
use phoneproof_fuzz::install_panic_policy;

fuzz_target!(
    init: {
        install_panic_policy();
    },
    |data: &[u8]| {
        if let Some(language) = negotiate(data) {
            let named = String::from_utf8_lossy(data).to_ascii_lowercase();
            assert!(
                named.contains(language.code()),
                "{language} picked from {named:?}"
            );
        }
        // With a default the answer is always a shipped language, whatever the header.
        let german = Language::from_code("de").expect("shipped");
        let picked = Negotiator { default: german }.pick(None, [data]);
        assert!(Language::all().any(|l| l == picked));
    }
);
