//! The 50- and 200-character limits, over HTTP, counted as Unicode scalar values.
use proptest::prelude::*;

use crate::helpers::*;

const PHONE_LEN: &str =
    "invalid SetMyPhoneRequest.Phone: value length must be between 1 and 50 runes, inclusive";
const CODE_LEN: &str =
    "invalid VerifyMyPhoneRequest.Code: value length must be between 1 and 200 runes, inclusive";

fn runtime_and_app() -> (tokio::runtime::Runtime, TestApp) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app_with(|s| s.code.send.max_per_window = 0));
    (rt, app)
}

fn text(chars: &[char]) -> String {
    chars.iter().collect()
}

#[test]
fn phones_of_1_to_50_scalars_pass_the_length_check_and_longer_ones_fail_exactly() {
    let (rt, app) = runtime_and_app();
    let t = app.token("limits");
    let cfg = ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(short in proptest::collection::vec(any::<char>(), 1..=50),
                     long in proptest::collection::vec(any::<char>(), 51..=120))| {
        let a = rt.block_on(app.set_phone(&t, &text(&short)));
        prop_assert_ne!(&a.body["message"], PHONE_LEN, "{} chars", short.len());
        prop_assert!(a.status != 500 && a.status != 503, "{}", a.body);
        let a = rt.block_on(app.set_phone(&t, &text(&long)));
        prop_assert_eq!(a.status.as_u16(), 400);
        prop_assert_eq!(a.body, serde_json::json!({"code": 3, "message": PHONE_LEN}));
    });
    // 50 emoji are 200 bytes but 50 runes; 51 are too many.
    let fifty: String = std::iter::once('+')
        .chain(std::iter::repeat_n('😀', 49))
        .collect();
    let a = rt.block_on(app.set_phone(&t, &fifty));
    assert_error(&a, 400, 3, "PHONE-so0wa", "Phone is invalid");
    let fifty_one: String = std::iter::repeat_n('😀', 51).collect();
    assert_validation(&rt.block_on(app.set_phone(&t, &fifty_one)), PHONE_LEN);
    assert_validation(&rt.block_on(app.set_phone(&t, "")), PHONE_LEN);
    assert_validation(
        &rt.block_on(app.set_phone(&t, "0041710000000")),
        "invalid SetMyPhoneRequest.Phone: value does not have prefix \"+\"",
    );
    rt.block_on(app.stop());
}

#[test]
fn codes_of_1_to_200_scalars_pass_the_length_check_and_longer_ones_fail_exactly() {
    let (rt, app) = runtime_and_app();
    let t = app.token("limits");
    let cfg = ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(short in proptest::collection::vec(any::<char>(), 1..=200),
                     long in proptest::collection::vec(any::<char>(), 201..=400))| {
        // No phone: a code that passes the length check meets "Code not found".
        let a = rt.block_on(app.verify(&t, &text(&short)));
        prop_assert_eq!(a.detail_id(), Some("COMMAND-Rsj8c"), "{}", a.body);
        let a = rt.block_on(app.verify(&t, &text(&long)));
        prop_assert_eq!(a.status.as_u16(), 400);
        prop_assert_eq!(a.body, serde_json::json!({"code": 3, "message": CODE_LEN}));
    });
    let emoji: String = std::iter::repeat_n('😀', 200).collect();
    assert_eq!(
        rt.block_on(app.verify(&t, &emoji)).detail_id(),
        Some("COMMAND-Rsj8c")
    );
    let emoji: String = std::iter::repeat_n('😀', 201).collect();
    assert_validation(&rt.block_on(app.verify(&t, &emoji)), CODE_LEN);
    assert_validation(&rt.block_on(app.verify(&t, "")), CODE_LEN);
    rt.block_on(app.stop());
}
