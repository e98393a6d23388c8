//! Replay: for any sequence of commands, folding the stored events gives the stored projection.
use phoneproof::domain::{
    CodeHasher, Command, NewCode, PhoneNumber, PhoneState, ResourceOwner, UserId,
};
use phoneproof::i18n::Language;
use proptest::prelude::*;

use crate::helpers::*;

#[derive(Debug, Clone)]
enum Step {
    Set(u8),
    Resend,
    Verify { right: bool },
    Remove,
    Wait(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3).prop_map(Step::Set),
        Just(Step::Resend),
        any::<bool>().prop_map(|right| Step::Verify { right }),
        Just(Step::Remove),
        (0u32..4_000_000).prop_map(Step::Wait),
    ]
}

#[test]
fn folding_the_event_log_gives_the_projection() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app_with(|s| {
        s.outbox.worker = false;
        s.code.policy.max_attempts = 2;
    }));
    // The test draws the codes itself (commands carry them), so it knows the right one.
    let hasher = CodeHasher::new([4; 32]);
    let owner = ResourceOwner::parse("1").unwrap();
    let cases = std::sync::atomic::AtomicU32::new(0);
    let cfg = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(steps in proptest::collection::vec(step(), 1..25))| {
        // Each case is a new user, so cases do not see each other.
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let user = UserId::parse(&format!("replay-{case}")).unwrap();
        let mut last_code = String::new();
        for (i, s) in steps.iter().enumerate() {
            if let Step::Wait(ms) = s {
                app.advance(*ms as i64);
                continue;
            }
            let plain = format!("C{case}X{i}");
            // Codes in every language, so events with each read back.
            let language = Language::all().nth(i % 20).unwrap();
            let code = NewCode::Local { hash: hasher.hash(&plain), plain: plain.clone(), language };
            let candidate = if matches!(s, Step::Verify { right: true }) { last_code.clone() } else { "WRONG".into() };
            let now = app.now_ms();
            let command = match s {
                Step::Set(n) => Command::Set { phone: PhoneNumber::parse(&format!("+4171000000{n}")).unwrap(), code },
                Step::Resend => Command::Resend { code },
                Step::Verify { .. } => Command::Verify { candidate: hasher.hash(&candidate) },
                Step::Remove => Command::Remove,
                Step::Wait(_) => unreachable!(),
            };
            let result = rt.block_on(app.state.service.execute(&user, &owner, command)).unwrap();
            if result.wrote_events && result.state.code.as_ref().is_some_and(|c| c.created_at == now) {
                last_code = plain;
            }
        }
        let events = rt.block_on(app.state.service.store().events(user.as_ref())).unwrap();
        let folded = events.iter().fold(PhoneState::default(), |state, e| {
            state.apply(e.event.as_ref().expect("every stored event reads back"), e.sequence, e.created_at)
        });
        let projection = rt.block_on(app.state.service.store().phone(user.as_ref())).unwrap().unwrap_or_default();
        prop_assert_eq!(folded, projection);
    });
    rt.block_on(app.stop());
}
