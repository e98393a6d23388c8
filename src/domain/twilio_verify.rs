//! Verify mode's rules: what a Verify does when Twilio Verify holds the code, before Twilio is
//! asked (`plan_check`) and once it answered (`decide_twilio_checked`). Pure, like `decide`.
use super::decide::{Decision, RECORDED_FAILURES_PER_CODE};
use super::{CodePolicy, DomainError, Event, PhoneNumber, PhoneState};

/// Twilio accepts codes of 4 to 10 characters; anything else is refused without asking it.
pub const TWILIO_CODE_CHARS: std::ops::RangeInclusive<usize> = 4..=10;

/// What Twilio Verify said about a code, reduced to what the rules need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// `approved`: the user holds the number.
    Approved,
    /// A wrong code (`pending`), or a verification that is over (`expired`, `canceled`,
    /// 20404): the code is invalid.
    Rejected,
    /// Twilio's own check limit (60202, `max_attempts_reached`): no code works any more.
    AttemptsExhausted,
}

/// Which verification Twilio is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// The send was recorded: its verification.
    Sid(String),
    /// Not yet (the send is queued or was interrupted): the number's pending verification.
    To(PhoneNumber),
}

/// What a Verify must do, decided from the state before Twilio is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckPlan {
    /// No Twilio code is pending (none at all, or one made here): the local rules decide.
    Local,
    /// Answer at once, writing nothing.
    Refuse(DomainError),
    /// Record the outcome without asking Twilio (a code Twilio would refuse anyway).
    Record {
        phone: PhoneNumber,
        code_sequence: u64,
        result: CheckResult,
    },
    /// Ask Twilio, then record its answer for the code added at `code_sequence`.
    Ask {
        phone: PhoneNumber,
        code_sequence: u64,
        target: CheckTarget,
    },
}

/// What a Verify of `typed` does in Verify mode, given the phone's state now.
pub fn plan_check(state: &PhoneState, typed: &str, policy: &CodePolicy) -> CheckPlan {
    let (Some(phone), Some(code)) = (&state.phone, &state.code) else {
        return CheckPlan::Local;
    };
    if code.hash.is_some() {
        return CheckPlan::Local;
    }
    if policy.max_attempts > 0 && code.failed_attempts >= policy.max_attempts {
        return CheckPlan::Refuse(DomainError::TooManyAttempts);
    }
    if !TWILIO_CODE_CHARS.contains(&typed.chars().count()) {
        return CheckPlan::Record {
            phone: phone.clone(),
            code_sequence: code.sequence,
            result: CheckResult::Rejected,
        };
    }
    CheckPlan::Ask {
        phone: phone.clone(),
        code_sequence: code.sequence,
        target: match &code.verification_sid {
            Some(sid) => CheckTarget::Sid(sid.clone()),
            None => CheckTarget::To(phone.clone()),
        },
    }
}

/// Twilio answered `result` for the code added at `code_sequence` to `phone`; the state may
/// have moved on while it was asked (another Verify, a Set, a Resend, a Remove).
pub(super) fn decide_twilio_checked(
    state: &PhoneState,
    phone: &PhoneNumber,
    code_sequence: u64,
    result: CheckResult,
    policy: &CodePolicy,
) -> Decision {
    // Verified or removed meanwhile: as a local code that was used up.
    let (Some(current), Some(code)) = (&state.phone, &state.code) else {
        return Decision::reject(DomainError::CodeNotFound);
    };
    if current != phone {
        // Twilio checked the number that was replaced: it proves nothing about this one.
        return Decision::reject(DomainError::CodeInvalid);
    }
    match result {
        // Twilio verifies a number, not one of our codes: an approval holds even when a
        // Resend added a newer code meanwhile (Twilio re-sends the same code while it is valid).
        CheckResult::Approved => Decision {
            events: vec![Event::Verified],
            outcome: Ok(()),
            sms: None,
        },
        CheckResult::AttemptsExhausted => Decision::reject(DomainError::TooManyAttempts),
        CheckResult::Rejected => {
            if code.sequence != code_sequence {
                // The refusal was for a code replaced meanwhile; the new one was not guessed.
                return Decision::reject(DomainError::CodeInvalid);
            }
            if policy.max_attempts > 0 && code.failed_attempts >= policy.max_attempts {
                return Decision::reject(DomainError::TooManyAttempts);
            }
            if code.failed_attempts >= RECORDED_FAILURES_PER_CODE {
                return Decision::reject(DomainError::CodeInvalid);
            }
            Decision {
                events: vec![Event::VerificationFailed],
                outcome: Err(DomainError::CodeInvalid),
                sms: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Millis;
    use crate::domain::{Command, NewCode, Policies, decide};
    use crate::i18n::Language;

    const P1: &str = "+41710000001";
    const P2: &str = "+41710000002";

    fn phone(raw: &str) -> PhoneNumber {
        PhoneNumber::parse(raw).unwrap()
    }

    fn run(commands: &[(Command, Millis)]) -> PhoneState {
        let policies = Policies::default();
        commands.iter().fold(PhoneState::default(), |s, (c, t)| {
            let d = decide(&s, c, &policies, *t);
            d.events.iter().fold(s, |s, e| {
                let seq = s.sequence + 1;
                s.apply(e, seq, *t)
            })
        })
    }

    fn set(p: &str) -> Command {
        Command::Set {
            phone: phone(p),
            code: NewCode::TwilioVerify {
                language: Language::from_code("en").unwrap(),
            },
        }
    }

    fn checked(p: &str, code_sequence: u64, result: CheckResult) -> Command {
        Command::TwilioChecked {
            phone: phone(p),
            code_sequence,
            result,
        }
    }

    fn sent(code_sequence: u64, sid: &str) -> Command {
        Command::RecordDelivery {
            code_sequence,
            verification_sid: Some(sid.into()),
        }
    }

    #[test]
    fn a_set_adds_a_code_without_hash_and_an_sms_without_code() {
        let d = decide(&PhoneState::default(), &set(P1), &Policies::default(), 0);
        assert_eq!(d.outcome, Ok(()));
        assert!(matches!(
            d.events[1],
            Event::CodeAdded {
                code_hash: None,
                ..
            }
        ));
        let sms = d.sms.expect("an SMS is queued");
        assert_eq!((sms.to, sms.code.as_str()), (phone(P1), ""));
    }

    #[test]
    fn the_check_asks_by_sid_once_known_and_by_number_before() {
        let p = CodePolicy::default();
        let state = run(&[(set(P1), 0)]);
        assert_eq!(
            plan_check(&state, "123456", &p),
            CheckPlan::Ask {
                phone: phone(P1),
                code_sequence: 2,
                target: CheckTarget::To(phone(P1)),
            }
        );
        let state = run(&[(set(P1), 0), (sent(2, "VE1"), 1)]);
        assert_eq!(
            plan_check(&state, "123456", &p),
            CheckPlan::Ask {
                phone: phone(P1),
                code_sequence: 2,
                target: CheckTarget::Sid("VE1".into()),
            }
        );
    }

    #[test]
    fn a_sid_recorded_for_a_replaced_code_is_not_kept() {
        // Set P1 (code at 2), Set P2 (code at 4), then the send of the first code lands.
        let state = run(&[(set(P1), 0), (set(P2), 1), (sent(2, "VE-old"), 2)]);
        assert_eq!(state.code.as_ref().unwrap().verification_sid, None);
    }

    #[test]
    fn codes_twilio_would_refuse_are_recorded_as_wrong_without_asking() {
        let p = CodePolicy::default();
        let state = run(&[(set(P1), 0)]);
        for typed in ["123", "12345678901", "ü"] {
            assert_eq!(
                plan_check(&state, typed, &p),
                CheckPlan::Record {
                    phone: phone(P1),
                    code_sequence: 2,
                    result: CheckResult::Rejected
                },
                "{typed}"
            );
        }
        for typed in ["1234", "1234567890", "ääää"] {
            assert!(
                matches!(plan_check(&state, typed, &p), CheckPlan::Ask { .. }),
                "{typed}"
            );
        }
    }

    #[test]
    fn local_codes_and_missing_codes_take_the_local_rules() {
        let p = CodePolicy::default();
        assert_eq!(
            plan_check(&PhoneState::default(), "123456", &p),
            CheckPlan::Local
        );
        let local = run(&[(
            Command::Set {
                phone: phone(P1),
                code: NewCode::Local {
                    plain: "A".into(),
                    hash: crate::domain::CodeHasher::new([0; 32]).hash("A"),
                    language: Language::from_code("en").unwrap(),
                },
            },
            0,
        )]);
        assert_eq!(plan_check(&local, "123456", &p), CheckPlan::Local);
    }

    /// Given the commands so far, when Twilio's answer is recorded, then this is the outcome
    /// and the events written.
    #[test]
    fn twilio_answers_table() {
        use CheckResult::*;
        type Row = (
            &'static str,
            Vec<(Command, Millis)>,
            Command,
            Result<(), DomainError>,
            &'static [&'static str],
        );
        let wrong5: Vec<(Command, Millis)> = std::iter::once((set(P1), 0))
            .chain((0..5).map(|i| (checked(P1, 2, Rejected), i + 1)))
            .collect();
        let rows: Vec<Row> = vec![
            (
                "approved",
                vec![(set(P1), 0)],
                checked(P1, 2, Approved),
                Ok(()),
                &["user.human.phone.verified"],
            ),
            (
                "approved after a Resend added a newer code",
                vec![
                    (set(P1), 0),
                    (
                        Command::Resend {
                            code: NewCode::TwilioVerify {
                                language: Language::from_code("en").unwrap(),
                            },
                        },
                        30_000,
                    ),
                ],
                checked(P1, 2, Approved),
                Ok(()),
                &["user.human.phone.verified"],
            ),
            (
                "COMMAND-sM0cs: wrong code",
                vec![(set(P1), 0)],
                checked(P1, 2, Rejected),
                Err(DomainError::CodeInvalid),
                &["user.human.phone.verification.failed"],
            ),
            (
                "COMMAND-sM0cs: refused for a code a Resend replaced, nothing counted",
                vec![
                    (set(P1), 0),
                    (
                        Command::Resend {
                            code: NewCode::TwilioVerify {
                                language: Language::from_code("en").unwrap(),
                            },
                        },
                        30_000,
                    ),
                ],
                checked(P1, 2, Rejected),
                Err(DomainError::CodeInvalid),
                &[],
            ),
            (
                "COMMAND-sM0cs: approved for a number replaced meanwhile",
                vec![(set(P1), 0), (set(P2), 1)],
                checked(P1, 2, Approved),
                Err(DomainError::CodeInvalid),
                &[],
            ),
            (
                "COMMAND-Rsj8c: a concurrent Verify already verified",
                vec![(set(P1), 0), (checked(P1, 2, Approved), 1)],
                checked(P1, 2, Rejected),
                Err(DomainError::CodeNotFound),
                &[],
            ),
            (
                "COMMAND-Rsj8c: removed meanwhile",
                vec![(set(P1), 0), (Command::Remove, 1)],
                checked(P1, 2, Approved),
                Err(DomainError::CodeNotFound),
                &[],
            ),
            (
                "PHONEPROOF-atmp5: Twilio's check limit",
                vec![(set(P1), 0)],
                checked(P1, 2, AttemptsExhausted),
                Err(DomainError::TooManyAttempts),
                &[],
            ),
            (
                "PHONEPROOF-atmp5: our cap was reached by concurrent checks",
                wrong5,
                checked(P1, 2, Rejected),
                Err(DomainError::TooManyAttempts),
                &[],
            ),
        ];
        let policies = Policies::default();
        for (name, given, when, outcome, events) in rows {
            let state = run(&given);
            let d = decide(&state, &when, &policies, 100_000);
            assert_eq!(d.outcome, outcome, "{name}");
            let types: Vec<&str> = d.events.iter().map(Event::event_type).collect();
            assert_eq!(types, events, "{name}");
            assert!(d.sms.is_none(), "{name}");
        }
    }
}
