//! Fault injection for the test suite, compiled in only with the `fault-injection` feature
//! (the tests turn it on). The user id names the fault, so one test's fault never reaches
//! another test's users: a command of user `fault-panic-<point>` panics at `<point>`.

#[inline]
pub fn panic_if_asked(user: &str, point: &str) {
    #[cfg(feature = "fault-injection")]
    if user.strip_prefix("fault-panic-") == Some(point) {
        panic!("fault injected at {point}");
    }
    let _ = (user, point);
}
