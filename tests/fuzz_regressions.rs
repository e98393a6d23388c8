//! Inputs the fuzz targets (fuzz/, `bash .ci/fuzz.sh`) found to break an invariant, replayed
//! through the same library functions the targets and the server call. Each test states the
//! correct behaviour; it fails until the service code is fixed.

use phoneproof::domain::{PhoneNumber, validate_phone_field};

/// `PhoneNumber::parse` must be a normalisation: what it stores (and GET returns) parses
/// back to itself. Otherwise setting the number GET returned is treated as a new number
/// (a new code, an SMS) instead of `COMMAND-wF94r` "Phone not changed", or is refused
/// outright as `PHONE-so0wa` although the service itself stored it.
///
/// Found by the `phone_parse` target (first crash input `00 00V000`, minimised to `000V`);
/// national numbers with leading zeros lose a different number of zeros on each parse.
/// Every input below passes the request checks (`+` prefix, at most 50 runes), so each is
/// reachable through `PUT /auth/v1/users/me/phone`.
#[test]
fn parsing_a_stored_phone_gives_the_same_phone() {
    let inputs = [
        // parse → "+41008000" → parse → "+418000": a different number.
        "+4100008000",
        "+41 0000 8000",
        "+41 00 00V000",
        // parse → "+10012345" → parse → "+112345".
        "+1000012345",
        // parse → "+4108" → parse → Err(PhoneInvalid): the stored number is "invalid".
        "+410008",
        "+41 0008",
        "+10008",
        "+440008",
    ];
    let mut broken = Vec::new();
    for raw in inputs {
        assert_eq!(
            validate_phone_field(raw),
            Ok(()),
            "{raw:?} passes the request checks"
        );
        let Ok(stored) = PhoneNumber::parse(raw) else {
            continue; // rejecting such a number is a correct fix too
        };
        let again = PhoneNumber::parse(stored.as_ref());
        if again.as_ref() != Ok(&stored) {
            broken.push(format!("{raw:?} -> {:?} -> {again:?}", stored.as_ref()));
        }
    }
    assert!(
        broken.is_empty(),
        "PhoneNumber::parse is not idempotent:\n{}",
        broken.join("\n")
    );
}
