//! Pure decisions: (state, command, now) -> events and an answer. No I/O, no clock, no RNG.
use super::{CodeHash, CodePolicy, DomainError, Event, PhoneNumber, PhoneState};
use crate::clock::Millis;

/// A freshly drawn code: the plain text goes only into the encrypted SMS, the hash into events.
#[derive(Clone)]
pub struct NewCode {
    pub plain: String,
    pub hash: CodeHash,
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
    pub code: String,
}

impl std::fmt::Debug for SmsToSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmsToSend({})", self.to.masked())
    }
}

impl Decision {
    fn reject(err: DomainError) -> Self {
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
        code_hash: code.hash.clone(),
        expires_at: now + policy.lifetime_ms,
    }
}

pub fn decide_set(
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
            code: code.plain.clone(),
        }),
    }
}

pub fn decide_resend(
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
            code: code.plain.clone(),
        }),
    }
}

pub fn decide_verify(
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
        return failed(DomainError::TooManyAttempts);
    }
    // Compare first so an expired code costs the same time as a live one.
    let matches = code.hash.matches(candidate);
    if now >= code.expires_at || !matches {
        return failed(DomainError::CodeInvalid);
    }
    Decision {
        events: vec![Event::Verified],
        outcome: Ok(()),
        sms: None,
    }
}

pub fn decide_remove(state: &PhoneState) -> Decision {
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
    use crate::domain::CodeHasher;
    use proptest::prelude::*;

    fn phone(raw: &str) -> PhoneNumber {
        PhoneNumber::parse(raw).unwrap()
    }

    fn new_code(hasher: &CodeHasher, plain: &str) -> NewCode {
        NewCode {
            plain: plain.to_owned(),
            hash: hasher.hash(plain),
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
    }
}
