//! The phone domain: parsed value types, events, and the pure rules that decide on commands.
mod code;
mod decide;
mod events;
mod ids;
mod limits;
mod phone;
mod screen;
mod state;
mod twilio_verify;

pub use code::{
    CODE_LENGTH_MESSAGE, CodeHash, CodeHasher, CodePolicy, VerificationCode, generate_code,
    os_random,
};
pub use decide::{Command, Decision, NewCode, Policies, SendPolicy, SmsToSend, decide};
pub use events::Event;
pub use ids::{ResourceOwner, UserId};
pub use limits::{CounterId, CounterKey, Counters, Limit, SendLimits};
pub use phone::{
    PHONE_LENGTH_MESSAGE, PHONE_PREFIX_MESSAGE, PhoneNumber, mask_phone, validate_phone_field,
};
pub use screen::{
    DestinationPolicy, NON_GEOGRAPHIC_CODES, NUMBER_TYPES, NumberFacts, NumberType, Region,
    RegionRules, Rule, screen,
};
pub use state::{
    PendingCode, PhoneState, REMEMBERED_SENDS, STATE_FORMAT_VERSION, StateFormatError,
};
pub use twilio_verify::{CheckPlan, CheckResult, CheckTarget, TWILIO_CODE_CHARS, plan_check};

/// A rule of the domain said no. Each maps to one row of the error catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("phone is invalid")]
    PhoneInvalid,
    #[error("phone not changed")]
    PhoneNotChanged,
    #[error("code not found")]
    CodeNotFound,
    #[error("code is invalid")]
    CodeInvalid,
    #[error("phone not found (resend)")]
    ResendPhoneNotFound,
    #[error("phone already verified")]
    PhoneAlreadyVerified,
    #[error("phone not found (remove)")]
    RemovePhoneNotFound,
    #[error("too many wrong attempts")]
    TooManyAttempts,
    #[error("send throttled for {retry_after_secs} s")]
    SendThrottled { retry_after_secs: u64 },
    /// The number is valid but gets no codes here (its type or its region).
    #[error("number refused by the {0} rule")]
    NumberRefused(Rule),
    /// A limit beyond the user's own: per number, per client address, or a circuit breaker.
    #[error("send limited by the {rule} rule for {retry_after_secs} s")]
    SendLimited { rule: Rule, retry_after_secs: u64 },
}

impl DomainError {
    /// The anti-abuse rule behind a refused send, for metrics.
    pub fn rule(&self) -> Option<Rule> {
        match self {
            DomainError::PhoneInvalid => Some(Rule::InvalidNumber),
            DomainError::SendThrottled { .. } => Some(Rule::User),
            DomainError::NumberRefused(rule) | DomainError::SendLimited { rule, .. } => Some(*rule),
            _ => None,
        }
    }
}
