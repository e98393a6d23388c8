//! Pure decisions: (state, command, now) -> events, an answer and the SMS to send.
//! No I/O, no clock, no RNG: the caller passes the time and the freshly drawn code.
use super::twilio_verify::{CheckResult, decide_twilio_checked};
use super::{
    CodeHash, CodePolicy, DestinationPolicy, DomainError, Event, NumberFacts, PhoneNumber,
    PhoneState, Region, SendLimits, screen,
};
use crate::clock::Millis;
use crate::i18n::Language;

/// What a user (or the delivery worker) asks of one phone.
#[derive(Debug, Clone)]
pub enum Command {
    /// A new number, with the code drawn for it.
    Set {
        phone: PhoneNumber,
        code: NewCode,
    },
    /// A code the user typed, already hashed with the server's key.
    Verify {
        candidate: CodeHash,
    },
    /// A new code for the current number.
    Resend {
        code: NewCode,
    },
    Remove,
    /// The provider accepted the SMS of the code added at `code_sequence`.
    RecordDelivery {
        code_sequence: u64,
        /// Twilio Verify's id of the verification it started.
        verification_sid: Option<String>,
    },
    /// Twilio Verify answered a check of the code added at `code_sequence`, sent to `phone`.
    TwilioChecked {
        phone: PhoneNumber,
        code_sequence: u64,
        result: CheckResult,
    },
}

impl Command {
    /// The name used in logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Set { .. } => "set",
            Command::Verify { .. } => "verify",
            Command::Resend { .. } => "resend",
            Command::Remove => "remove",
            Command::RecordDelivery { .. } => "record_delivery",
            Command::TwilioChecked { .. } => "twilio_checked",
        }
    }
}

/// The rules a decision applies, fixed at start from the settings.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub code: CodePolicy,
    pub send: SendPolicy,
    pub destinations: DestinationPolicy,
    /// Applied by the write path, which holds the shared counts.
    pub limits: SendLimits,
}

/// The one decision entry point: what `command` does to a phone in `state` at `now`.
pub fn decide(state: &PhoneState, command: &Command, policies: &Policies, now: Millis) -> Decision {
    let decision = decide_rules(state, command, policies, now);
    // Whatever would send a code (Set, and Resend to a number stored before the rules
    // changed) sends it only to a number the destination rules admit.
    let Some(sms) = &decision.sms else {
        return decision;
    };
    match screen(&NumberFacts::of(&sms.to), &policies.destinations) {
        Ok(region) => Decision {
            sms: decision.sms.map(|sms| SmsToSend {
                region: Some(region),
                ..sms
            }),
            ..decision
        },
        Err(refused) => Decision::reject(refused),
    }
}

fn decide_rules(
    state: &PhoneState,
    command: &Command,
    policies: &Policies,
    now: Millis,
) -> Decision {
    match command {
        Command::Set { phone, code } => {
            decide_set(state, phone, code, &policies.code, &policies.send, now)
        }
        Command::Verify { candidate } => decide_verify(state, candidate, &policies.code, now),
        Command::Resend { code } => decide_resend(state, code, &policies.code, &policies.send, now),
        Command::Remove => decide_remove(state),
        Command::RecordDelivery {
            code_sequence,
            verification_sid,
        } => Decision {
            // A sid belongs to its code only: a newer code keeps none until its own send.
            events: vec![Event::CodeSent {
                verification_sid: verification_sid
                    .clone()
                    .filter(|_| state.code.as_ref().map(|c| c.sequence) == Some(*code_sequence)),
            }],
            outcome: Ok(()),
            sms: None,
        },
        Command::TwilioChecked {
            phone,
            code_sequence,
            result,
        } => decide_twilio_checked(state, phone, *code_sequence, *result, &policies.code),
    }
}

/// The code of a Set or Resend.
#[derive(Clone)]
pub enum NewCode {
    /// Freshly drawn: the plain text goes only into the encrypted SMS, the hash into events.
    /// `language` is that of the request that asked for the code: its SMS is written in it.
    Local {
        plain: String,
        hash: CodeHash,
        language: Language,
    },
    /// Twilio Verify makes, sends and checks it; nothing of it is known here but the
    /// language Twilio is asked to write the SMS in.
    TwilioVerify { language: Language },
}

// The plain code never reaches logs, not even through a stray `{:?}` of a command.
impl std::fmt::Debug for NewCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewCode::Local { .. } => f.write_str("NewCode(***)"),
            NewCode::TwilioVerify { .. } => f.write_str("NewCode(Twilio Verify)"),
        }
    }
}

impl NewCode {
    /// What the SMS carries: the code, or nothing when Twilio Verify writes the SMS.
    fn plain(&self) -> String {
        match self {
            NewCode::Local { plain, .. } => plain.clone(),
            NewCode::TwilioVerify { .. } => String::new(),
        }
    }

    pub fn language(&self) -> Language {
        match self {
            NewCode::Local { language, .. } | NewCode::TwilioVerify { language } => *language,
        }
    }
}

/// Limits on sending codes, against SMS pumping.
#[derive(Debug, Clone)]
pub struct SendPolicy {
    /// Minimum time between the last code and a Resend.
    pub resend_cooldown_ms: i64,
    /// Rolling window over which at most `max_per_window` codes go to one user.
    pub window_ms: i64,
    pub max_per_window: usize,
}

impl Default for SendPolicy {
    fn default() -> Self {
        Self {
            resend_cooldown_ms: 30_000,
            window_ms: 600_000,
            max_per_window: 5,
        }
    }
}

/// What a command decided: the events to append (possibly even when it answers an error,
/// as a failed verification is recorded), the answer, and a code to send by SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub outcome: Result<(), DomainError>,
    pub sms: Option<SmsToSend>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct SmsToSend {
    pub to: PhoneNumber,
    /// Empty when Twilio Verify makes the code.
    pub code: String,
    pub language: Language,
    /// Where `to` is, as the destination rules found it (they parse the number; the send
    /// limits need the region too).
    pub region: Option<Region>,
}

impl std::fmt::Debug for SmsToSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmsToSend({})", self.to.masked())
    }
}

impl Decision {
    pub(super) fn reject(err: DomainError) -> Self {
        Self {
            events: vec![],
            outcome: Err(err),
            sms: None,
        }
    }
}

fn ceil_secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000)
}

/// The rolling-window limit: `Some(wait)` when one more send now would exceed it.
fn window_wait(state: &PhoneState, send: &SendPolicy, now: Millis) -> Option<u64> {
    if send.max_per_window == 0 {
        return None;
    }
    let in_window: Vec<Millis> = state
        .sends
        .iter()
        .copied()
        .filter(|t| *t > now - send.window_ms)
        .collect();
    if in_window.len() < send.max_per_window {
        return None;
    }
    // The send that has to leave the window before one more fits.
    let leaving = in_window[in_window.len() - send.max_per_window];
    Some(ceil_secs(leaving + send.window_ms - now))
}

fn code_added(code: &NewCode, policy: &CodePolicy, now: Millis) -> Event {
    Event::CodeAdded {
        code_hash: match code {
            NewCode::Local { hash, .. } => Some(hash.clone()),
            NewCode::TwilioVerify { .. } => None,
        },
        expires_at: now + policy.lifetime_ms,
        language: Some(code.language()),
    }
}

fn decide_set(
    state: &PhoneState,
    phone: &PhoneNumber,
    code: &NewCode,
    policy: &CodePolicy,
    send: &SendPolicy,
    now: Millis,
) -> Decision {
    if state.phone.as_ref() == Some(phone) {
        return Decision::reject(DomainError::PhoneNotChanged);
    }
    if let Some(retry_after_secs) = window_wait(state, send, now) {
        return Decision::reject(DomainError::SendThrottled { retry_after_secs });
    }
    Decision {
        events: vec![
            Event::PhoneChanged {
                phone: phone.clone(),
            },
            code_added(code, policy, now),
        ],
        outcome: Ok(()),
        sms: Some(SmsToSend {
            to: phone.clone(),
            code: code.plain(),
            language: code.language(),
            region: None,
        }),
    }
}

fn decide_resend(
    state: &PhoneState,
    code: &NewCode,
    policy: &CodePolicy,
    send: &SendPolicy,
    now: Millis,
) -> Decision {
    let Some(phone) = &state.phone else {
        return Decision::reject(DomainError::ResendPhoneNotFound);
    };
    if state.verified {
        return Decision::reject(DomainError::PhoneAlreadyVerified);
    }
    if let Some(last) = state.sends.last() {
        let ready_at = last + send.resend_cooldown_ms;
        if now < ready_at {
            return Decision::reject(DomainError::SendThrottled {
                retry_after_secs: ceil_secs(ready_at - now),
            });
        }
    }
    if let Some(retry_after_secs) = window_wait(state, send, now) {
        return Decision::reject(DomainError::SendThrottled { retry_after_secs });
    }
    Decision {
        events: vec![code_added(code, policy, now)],
        outcome: Ok(()),
        sms: Some(SmsToSend {
            to: phone.clone(),
            code: code.plain(),
            language: code.language(),
            region: None,
        }),
    }
}

/// Wrong codes recorded per code at most, when attempts are not capped.
pub const RECORDED_FAILURES_PER_CODE: u32 = 100;

fn decide_verify(
    state: &PhoneState,
    candidate: &CodeHash,
    policy: &CodePolicy,
    now: Millis,
) -> Decision {
    let (Some(_), Some(code)) = (&state.phone, &state.code) else {
        return Decision::reject(DomainError::CodeNotFound);
    };
    let failed = |err| Decision {
        events: vec![Event::VerificationFailed],
        outcome: Err(err),
        sms: None,
    };
    if policy.max_attempts > 0 && code.failed_attempts >= policy.max_attempts {
        // A dead code records nothing more: guessing on cannot grow the event log.
        return Decision::reject(DomainError::TooManyAttempts);
    }
    let Some(hash) = &code.hash else {
        // Twilio Verify's code, but Verify mode is off: nothing here can check it.
        return Decision::reject(DomainError::CodeInvalid);
    };
    // Compare first so an expired code costs the same time as a live one.
    let matches = hash.matches(candidate);
    if now >= code.expires_at || !matches {
        if code.failed_attempts >= RECORDED_FAILURES_PER_CODE {
            // Without a cap (as ZITADEL) guessing goes on, but the log records only so much
            // of it per code: the answer is the same, nothing more is written.
            return Decision::reject(DomainError::CodeInvalid);
        }
        return failed(DomainError::CodeInvalid);
    }
    Decision {
        events: vec![Event::Verified],
        outcome: Ok(()),
        sms: None,
    }
}

fn decide_remove(state: &PhoneState) -> Decision {
    if state.phone.is_none() {
        return Decision::reject(DomainError::RemovePhoneNotFound);
    }
    Decision {
        events: vec![Event::Removed],
        outcome: Ok(()),
        sms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CodeHasher, NumberType, Rule};
    use proptest::prelude::*;

    fn phone(raw: &str) -> PhoneNumber {
        PhoneNumber::parse(raw).unwrap()
    }

    fn french() -> Language {
        Language::from_code("fr").unwrap()
    }

    fn new_code(hasher: &CodeHasher, plain: &str) -> NewCode {
        NewCode::Local {
            plain: plain.to_owned(),
            hash: hasher.hash(plain),
            language: french(),
        }
    }

    fn fold(state: PhoneState, d: &Decision, now: Millis) -> PhoneState {
        d.events.iter().fold(state, |s, e| {
            let seq = s.sequence + 1;
            s.apply(e, seq, now)
        })
    }

    #[test]
    fn cooldown_answers_with_the_seconds_left() {
        let h = CodeHasher::new([0; 32]);
        let (p, s) = (CodePolicy::default(), SendPolicy::default());
        let d = decide_set(
            &PhoneState::default(),
            &phone("+41710000000"),
            &new_code(&h, "A"),
            &p,
            &s,
            0,
        );
        let state = fold(PhoneState::default(), &d, 0);
        let d = decide_resend(&state, &new_code(&h, "B"), &p, &s, 10_500);
        assert_eq!(
            d.outcome,
            Err(DomainError::SendThrottled {
                retry_after_secs: 20
            })
        );
        let d = decide_resend(&state, &new_code(&h, "B"), &p, &s, 30_000);
        assert_eq!(d.outcome, Ok(()));
    }

    #[test]
    fn window_limit_counts_set_and_resend_together() {
        let h = CodeHasher::new([0; 32]);
        let (p, s) = (CodePolicy::default(), SendPolicy::default());
        let mut state = PhoneState::default();
        let mut now = 0;
        for i in 0..5 {
            let d = if i % 2 == 0 {
                decide_set(
                    &state,
                    &phone(&format!("+4171000000{i}")),
                    &new_code(&h, "A"),
                    &p,
                    &s,
                    now,
                )
            } else {
                decide_resend(&state, &new_code(&h, "A"), &p, &s, now)
            };
            assert_eq!(d.outcome, Ok(()), "send {i}");
            state = fold(state, &d, now);
            now += 31_000;
        }
        let d = decide_set(
            &state,
            &phone("+41719999999"),
            &new_code(&h, "A"),
            &p,
            &s,
            now,
        );
        // The first send at 0 leaves the window at 600 s.
        assert_eq!(
            d.outcome,
            Err(DomainError::SendThrottled {
                retry_after_secs: ceil_secs(600_000 - now)
            })
        );
        assert!(d.events.is_empty());
    }

    /// Given the commands so far (each at a time in ms), when one more comes, then this is
    /// the answer, the events written, and whether an SMS goes out. One row per error-catalog
    /// id the rules decide, per throttle and attempt-cap rule, and per success.
    #[test]
    fn rules_table() {
        const P1: &str = "+41710000001";
        const P2: &str = "+41710000002";
        let h = CodeHasher::new([9; 32]);
        let set = |p: &str| Command::Set {
            phone: phone(p),
            code: new_code(&h, "RIGHT1"),
        };
        let resend = || Command::Resend {
            code: new_code(&h, "RIGHT1"),
        };
        let verify = |c: &str| Command::Verify {
            candidate: h.hash(c),
        };
        let policies = Policies::default(); // 5 attempts, 1 h codes, 30 s cooldown, 5 per 10 min
        let hour = 3_600_000;
        let throttled = |s| {
            Err(DomainError::SendThrottled {
                retry_after_secs: s,
            })
        };
        type Row = (
            &'static str,
            Vec<(Command, Millis)>,
            (Command, Millis),
            Result<(), DomainError>,
            &'static [&'static str],
            bool,
        );
        let rows: Vec<Row> = vec![
            (
                "set on a new user",
                vec![],
                (set(P1), 0),
                Ok(()),
                &["user.human.phone.changed", "user.human.phone.code.added"],
                true,
            ),
            (
                "set another number",
                vec![(set(P1), 0)],
                (set(P2), 1_000),
                Ok(()),
                &["user.human.phone.changed", "user.human.phone.code.added"],
                true,
            ),
            (
                "COMMAND-wF94r: same number again",
                vec![(set(P1), 0)],
                (set(P1), 1_000),
                Err(DomainError::PhoneNotChanged),
                &[],
                false,
            ),
            (
                "COMMAND-wF94r: same number once verified",
                vec![(set(P1), 0), (verify("RIGHT1"), 1)],
                (set(P1), 1_000),
                Err(DomainError::PhoneNotChanged),
                &[],
                false,
            ),
            (
                "verify the right code",
                vec![(set(P1), 0)],
                (verify("RIGHT1"), 1_000),
                Ok(()),
                &["user.human.phone.verified"],
                false,
            ),
            (
                "COMMAND-Rsj8c: verify without a phone",
                vec![],
                (verify("RIGHT1"), 0),
                Err(DomainError::CodeNotFound),
                &[],
                false,
            ),
            (
                "COMMAND-Rsj8c: verify after the code was used",
                vec![(set(P1), 0), (verify("RIGHT1"), 1)],
                (verify("RIGHT1"), 2),
                Err(DomainError::CodeNotFound),
                &[],
                false,
            ),
            (
                "COMMAND-Rsj8c: verify after remove",
                vec![(set(P1), 0), (Command::Remove, 1)],
                (verify("RIGHT1"), 2),
                Err(DomainError::CodeNotFound),
                &[],
                false,
            ),
            (
                "COMMAND-sM0cs: wrong code",
                vec![(set(P1), 0)],
                (verify("WRONG1"), 1_000),
                Err(DomainError::CodeInvalid),
                &["user.human.phone.verification.failed"],
                false,
            ),
            (
                "COMMAND-sM0cs: right code, expired",
                vec![(set(P1), 0)],
                (verify("RIGHT1"), hour),
                Err(DomainError::CodeInvalid),
                &["user.human.phone.verification.failed"],
                false,
            ),
            (
                "COMMAND-sM0cs: code is case-sensitive",
                vec![(set(P1), 0)],
                (verify("right1"), 1),
                Err(DomainError::CodeInvalid),
                &["user.human.phone.verification.failed"],
                false,
            ),
            (
                "PHONEPROOF-atmp5: right code after 5 wrong",
                vec![
                    (set(P1), 0),
                    (verify("W"), 1),
                    (verify("W"), 2),
                    (verify("W"), 3),
                    (verify("W"), 4),
                    (verify("W"), 5),
                ],
                (verify("RIGHT1"), 6),
                Err(DomainError::TooManyAttempts),
                &[],
                false,
            ),
            (
                "right code after 4 wrong still works",
                vec![
                    (set(P1), 0),
                    (verify("W"), 1),
                    (verify("W"), 2),
                    (verify("W"), 3),
                    (verify("W"), 4),
                ],
                (verify("RIGHT1"), 5),
                Ok(()),
                &["user.human.phone.verified"],
                false,
            ),
            (
                "a resend revives a dead code",
                vec![
                    (set(P1), 0),
                    (verify("W"), 1),
                    (verify("W"), 2),
                    (verify("W"), 3),
                    (verify("W"), 4),
                    (verify("W"), 5),
                ],
                (resend(), 30_000),
                Ok(()),
                &["user.human.phone.code.added"],
                true,
            ),
            (
                "resend after the cooldown",
                vec![(set(P1), 0)],
                (resend(), 30_000),
                Ok(()),
                &["user.human.phone.code.added"],
                true,
            ),
            (
                "PHONEPROOF-thr0t: resend within the cooldown",
                vec![(set(P1), 0)],
                (resend(), 10_500),
                throttled(20),
                &[],
                false,
            ),
            (
                "PHONEPROOF-thr0t: set beyond 5 per window",
                vec![
                    (set(P1), 0),
                    (set(P2), 1),
                    (set(P1), 2),
                    (set(P2), 3),
                    (set(P1), 4),
                ],
                (set(P2), 60_000),
                throttled(540),
                &[],
                false,
            ),
            (
                "PHONEPROOF-thr0t: resend beyond 5 per window",
                vec![
                    (set(P1), 0),
                    (resend(), 30_000),
                    (resend(), 60_000),
                    (resend(), 90_000),
                    (resend(), 120_000),
                ],
                (resend(), 150_000),
                throttled(450),
                &[],
                false,
            ),
            (
                "the window rolls: the sixth send once the first left",
                vec![
                    (set(P1), 0),
                    (set(P2), 1),
                    (set(P1), 2),
                    (set(P2), 3),
                    (set(P1), 4),
                ],
                (set(P2), 600_001),
                Ok(()),
                &["user.human.phone.changed", "user.human.phone.code.added"],
                true,
            ),
            (
                "PHONE-so0wa: a number that cannot exist",
                vec![(set(P1), 0)],
                (set("+4175000000"), 60_000),
                Err(DomainError::PhoneInvalid),
                &[],
                false,
            ),
            (
                "PHONEPROOF-nosms: a premium-rate number",
                vec![(set(P1), 0)],
                (set("+41900123456"), 60_000),
                Err(DomainError::NumberRefused(Rule::NumberType)),
                &[],
                false,
            ),
            (
                "PHONEPROOF-nosms: a satellite number",
                vec![],
                (set("+881612345678"), 0),
                Err(DomainError::NumberRefused(Rule::Region)),
                &[],
                false,
            ),
            (
                "COMMAND-2b7Hf: resend without a phone",
                vec![],
                (resend(), 0),
                Err(DomainError::ResendPhoneNotFound),
                &[],
                false,
            ),
            (
                "COMMAND-2b7Hf: resend after remove",
                vec![(set(P1), 0), (Command::Remove, 1)],
                (resend(), 60_000),
                Err(DomainError::ResendPhoneNotFound),
                &[],
                false,
            ),
            (
                "COMMAND-2M9sf: resend once verified",
                vec![(set(P1), 0), (verify("RIGHT1"), 1)],
                (resend(), 60_000),
                Err(DomainError::PhoneAlreadyVerified),
                &[],
                false,
            ),
            (
                "remove a phone",
                vec![(set(P1), 0)],
                (Command::Remove, 1),
                Ok(()),
                &["user.human.phone.removed"],
                false,
            ),
            (
                "COMMAND-p6rsc: remove without a phone",
                vec![],
                (Command::Remove, 0),
                Err(DomainError::RemovePhoneNotFound),
                &[],
                false,
            ),
            (
                "COMMAND-p6rsc: remove twice",
                vec![(set(P1), 0), (Command::Remove, 1)],
                (Command::Remove, 2),
                Err(DomainError::RemovePhoneNotFound),
                &[],
                false,
            ),
            (
                "a delivery is recorded",
                vec![(set(P1), 0)],
                (
                    Command::RecordDelivery {
                        code_sequence: 2,
                        verification_sid: None,
                    },
                    1,
                ),
                Ok(()),
                &["user.human.phone.code.sent"],
                false,
            ),
        ];
        for (name, given, (when, at), outcome, events, sms) in rows {
            let mut state = PhoneState::default();
            for (cmd, t) in &given {
                let d = decide(&state, cmd, &policies, *t);
                state = fold(state, &d, *t);
            }
            let d = decide(&state, &when, &policies, at);
            assert_eq!(d.outcome, outcome, "{name}");
            let types: Vec<&str> = d.events.iter().map(Event::event_type).collect();
            assert_eq!(types, events, "{name}");
            assert_eq!(d.sms.is_some(), sms, "{name}");
            if let Some(sms) = &d.sms {
                // The send limits count by it.
                assert!(sms.region.is_some(), "{name}: the SMS knows its region");
            }
            if let (Some(sms), Command::Set { phone, .. }) = (&d.sms, &when) {
                assert_eq!(&sms.to, phone, "{name}: the SMS goes to the new number");
            }
            // The language of the request goes with its code: into the event and the SMS.
            if let Some(sms) = &d.sms {
                assert_eq!(sms.language, french(), "{name}");
            }
            for e in &d.events {
                if let Event::CodeAdded { language, .. } = e {
                    assert_eq!(*language, Some(french()), "{name}");
                }
            }
        }
    }

    /// A number stored while the rules allowed it gets no more codes once they do not.
    #[test]
    fn resend_to_a_number_the_rules_now_refuse_is_refused() {
        let h = CodeHasher::new([9; 32]);
        let mut then = Policies::default();
        then.destinations
            .allowed_types
            .push(NumberType::PremiumRate);
        let set = Command::Set {
            phone: phone("+41900123456"),
            code: new_code(&h, "A"),
        };
        let d = decide(&PhoneState::default(), &set, &then, 0);
        assert_eq!(d.outcome, Ok(()));
        let state = fold(PhoneState::default(), &d, 0);
        let resend = Command::Resend {
            code: new_code(&h, "B"),
        };
        let d = decide(&state, &resend, &Policies::default(), 60_000);
        assert_eq!(d.outcome, Err(DomainError::NumberRefused(Rule::NumberType)));
        assert!(d.events.is_empty() && d.sms.is_none());
    }

    proptest! {
        /// Past the cap even the right code is refused; below it the right code still works.
        #[test]
        fn attempts_beyond_the_cap_are_refused(cap in 1u32..8, wrong in 0u32..12) {
            let h = CodeHasher::new([3; 32]);
            let p = CodePolicy { max_attempts: cap, ..CodePolicy::default() };
            let s = SendPolicy::default();
            let d = decide_set(&PhoneState::default(), &phone("+41710000000"), &new_code(&h, "RIGHT1"), &p, &s, 0);
            let mut state = fold(PhoneState::default(), &d, 0);
            for _ in 0..wrong {
                let d = decide_verify(&state, &h.hash("WRONG1"), &p, 1);
                prop_assert!(d.outcome.is_err());
                state = fold(state, &d, 1);
            }
            let d = decide_verify(&state, &h.hash("RIGHT1"), &p, 1);
            if wrong >= cap {
                prop_assert_eq!(d.outcome, Err(DomainError::TooManyAttempts));
            } else {
                prop_assert_eq!(d.outcome, Ok(()));
            }
        }

        /// Uncapped, every wrong code is refused, but only the first ones per code are written,
        /// and the right code still verifies after any number of wrong ones.
        #[test]
        fn uncapped_guessing_writes_a_bounded_number_of_events(extra in 0u32..40) {
            let h = CodeHasher::new([4; 32]);
            let p = CodePolicy { max_attempts: 0, ..CodePolicy::default() };
            let s = SendPolicy::default();
            let d = decide_set(&PhoneState::default(), &phone("+41710000000"), &new_code(&h, "RIGHT1"), &p, &s, 0);
            let mut state = fold(PhoneState::default(), &d, 0);
            let mut written = 0;
            for _ in 0..RECORDED_FAILURES_PER_CODE + extra {
                let d = decide_verify(&state, &h.hash("WRONG1"), &p, 1);
                prop_assert_eq!(&d.outcome, &Err(DomainError::CodeInvalid));
                written += d.events.len() as u32;
                state = fold(state, &d, 1);
            }
            prop_assert_eq!(written, RECORDED_FAILURES_PER_CODE);
            prop_assert_eq!(decide_verify(&state, &h.hash("RIGHT1"), &p, 1).outcome, Ok(()));
        }
    }
}
