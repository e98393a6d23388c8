//! The phone domain: parsed value types, events, and the pure rules that decide on commands.
mod code;
mod decide;
mod events;
mod ids;
mod phone;
mod state;
mod twilio_verify;

pub use code::{
    CODE_LENGTH_MESSAGE, CodeHash, CodeHasher, CodePolicy, VerificationCode, generate_code,
    os_random,
};
pub use decide::{Command, Decision, NewCode, Policies, SendPolicy, SmsToSend, decide};
pub use events::Event;
pub use ids::{ResourceOwner, UserId};
pub use phone::{
    PHONE_LENGTH_MESSAGE, PHONE_PREFIX_MESSAGE, PhoneNumber, mask_phone, validate_phone_field,
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
}
