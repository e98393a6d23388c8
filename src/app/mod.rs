//! The application service: every use case on a user's phone, the same for every surface.
//! A surface (REST today) authenticates and decodes, calls one function here, and maps the
//! result to its wire. Here: load the state, decide with the pure domain, fold, seal the SMS,
//! write in one transaction, wake the outbox worker, answer in domain types.
mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Millis, SharedClock};
use crate::domain::{
    CheckPlan, CodeHasher, Command, DomainError, NewCode, NumberFacts, PhoneNumber, PhoneState,
    Policies, Region, ResourceOwner, Rule, UserId, VerificationCode, generate_code, os_random,
    plan_check, screen,
};
use crate::i18n::Language;
use crate::metrics::Metrics;
use crate::sealed_sms::SmsSealer;
use crate::sms::verify::{CheckError, TwilioVerify};
use crate::store::{Store, StoreError};

pub use writer::Executed;
use writer::{Job, Writer};

/// Why a use case did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A rule said no: the user's request, not the service, is at fault.
    #[error(transparent)]
    Rejected(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The write path did not answer (its task is restarting or shutting down).
    #[error("the write path is not answering")]
    WriterGone,
    /// The transaction this command shared with others failed (the cause is logged once).
    #[error("the write batch failed")]
    BatchFailed { transient: bool },
    /// The command raised a panic; it was contained to this command.
    #[error("the command failed unexpectedly")]
    Panicked,
    /// Twilio Verify gave no answer about the code (Verify mode); nothing was recorded.
    #[error(transparent)]
    TwilioVerify(#[from] CheckError),
}

/// What a successful change wrote: the sequence and time of its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub sequence: u64,
    pub changed_at: Millis,
}

/// How long readiness waits for the write path before calling it not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

struct Inner {
    store: Store,
    clock: SharedClock,
    policies: Policies,
    hasher: CodeHasher,
    outbox_wakeup: Arc<Notify>,
    writer: Writer,
    /// Verify mode: Twilio Verify makes and checks the codes.
    twilio_verify: Option<TwilioVerify>,
    metrics: Arc<Metrics>,
    /// The minute a circuit breaker was last logged as open, so an attack logs once a
    /// minute, not once a request.
    breaker_logged: AtomicI64,
}

/// Cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct PhoneService {
    inner: Arc<Inner>,
}

impl PhoneService {
    /// Builds the service and starts its write path (on SQLite, the group-commit task).
    pub fn new(
        store: Store,
        clock: SharedClock,
        policies: Policies,
        hasher: CodeHasher,
        sealer: SmsSealer,
        twilio_verify: Option<TwilioVerify>,
        metrics: Arc<Metrics>,
    ) -> PhoneService {
        let outbox_wakeup = Arc::new(Notify::new());
        let writer = Writer::start(
            store.clone(),
            policies.clone(),
            sealer,
            outbox_wakeup.clone(),
        );
        PhoneService {
            inner: Arc::new(Inner {
                store,
                clock,
                policies,
                hasher,
                outbox_wakeup,
                writer,
                twilio_verify,
                metrics,
                breaker_logged: AtomicI64::new(i64::MIN),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn now(&self) -> Millis {
        self.inner.clock.now_ms()
    }

    /// Notified whenever a committed write queued an SMS.
    pub fn outbox_wakeup(&self) -> Arc<Notify> {
        self.inner.outbox_wakeup.clone()
    }

    /// The user's phone as the projection has it (the default state when there is none).
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn get(&self, user: &UserId) -> Result<PhoneState, AppError> {
        Ok(self
            .inner
            .store
            .phone(user.as_ref())
            .await?
            .unwrap_or_default())
    }

    /// Sets a new number and sends it a code, its SMS written in `language`.
    #[tracing::instrument(skip_all, fields(user = %user, to = %phone.masked(), %language))]
    pub async fn set(
        &self,
        user: &UserId,
        owner: &ResourceOwner,
        phone: PhoneNumber,
        language: Language,
        client: Option<IpAddr>,
    ) -> Result<Change, AppError> {
        // Refused before a code is drawn or the write path is asked: a flood of numbers
        // that cannot get codes costs no transaction.
        let facts = NumberFacts::of(&phone);
        if let Err(refused) = screen(&facts, &self.inner.policies.destinations) {
            self.count_refusal(&refused, facts.region);
            return Err(refused.into());
        }
        let code = self.new_code(language);
        self.change(user, owner, Command::Set { phone, code }, client)
            .await
    }

    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn verify(
        &self,
        user: &UserId,
        owner: &ResourceOwner,
        code: &VerificationCode,
    ) -> Result<Change, AppError> {
        if let Some(twilio) = &self.inner.twilio_verify {
            let state = self.get(user).await?;
            if let Some(command) = self.twilio_check(twilio, &state, code).await? {
                return self.change(user, owner, command, None).await;
            }
        }
        let candidate = self.inner.hasher.hash(code.expose());
        self.change(user, owner, Command::Verify { candidate }, None)
            .await
    }

    /// Verify mode: the command that records Twilio's answer (or the refusal Twilio would
    /// give), or None when no Twilio code is pending and the local rules decide.
    async fn twilio_check(
        &self,
        twilio: &TwilioVerify,
        state: &PhoneState,
        code: &VerificationCode,
    ) -> Result<Option<Command>, AppError> {
        let (phone, code_sequence, result) =
            match plan_check(state, code.expose(), &self.inner.policies.code) {
                CheckPlan::Local => return Ok(None),
                CheckPlan::Refuse(e) => return Err(e.into()),
                CheckPlan::Record {
                    phone,
                    code_sequence,
                    result,
                } => (phone, code_sequence, result),
                // Asked outside any transaction; the answer is then decided against the state
                // as it is by then (a concurrent Verify or a Set may have won meanwhile).
                CheckPlan::Ask {
                    phone,
                    code_sequence,
                    target,
                } => (
                    phone,
                    code_sequence,
                    twilio.check(&target, code.expose()).await?,
                ),
            };
        Ok(Some(Command::TwilioChecked {
            phone,
            code_sequence,
            result,
        }))
    }

    /// Sends a new code to the current number, its SMS written in `language`.
    #[tracing::instrument(skip_all, fields(user = %user, %language))]
    pub async fn resend(
        &self,
        user: &UserId,
        owner: &ResourceOwner,
        language: Language,
        client: Option<IpAddr>,
    ) -> Result<Change, AppError> {
        let code = self.new_code(language);
        self.change(user, owner, Command::Resend { code }, client)
            .await
    }

    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn remove(&self, user: &UserId, owner: &ResourceOwner) -> Result<Change, AppError> {
        self.change(user, owner, Command::Remove, None).await
    }

    /// Whether an outbox message for the code added at `code_sequence` should still go out
    /// (not replaced, used, removed or expired), given the user's stored state.
    pub fn delivery_wanted(
        &self,
        stored_state: Option<&str>,
        code_sequence: u64,
    ) -> Result<bool, AppError> {
        let state = match stored_state {
            None => PhoneState::default(),
            Some(text) => PhoneState::from_stored(text)
                .map_err(|e| AppError::Store(StoreError::DamagedState(e)))?,
        };
        Ok(state.code_still_current(code_sequence, self.now()))
    }

    /// Records that the provider accepted outbox message `message_id` (for the code added at
    /// `code_sequence`): the message becomes delivered and `code.sent` is appended, in one
    /// transaction. False when the message was no longer pending (then nothing is written).
    #[tracing::instrument(skip_all, fields(user = %user, message_id))]
    pub async fn record_delivery(
        &self,
        user: &UserId,
        owner: &ResourceOwner,
        message_id: &str,
        code_sequence: u64,
        verification_sid: Option<String>,
    ) -> Result<bool, AppError> {
        let job = Job {
            user: user.clone(),
            owner: owner.clone(),
            now: self.now(),
            command: Command::RecordDelivery {
                code_sequence,
                verification_sid,
            },
            delivered_message: Some(message_id.to_owned()),
            client: None,
        };
        let done = self.inner.writer.execute(job).await?;
        Ok(done.wrote_events)
    }

    /// Runs any command as given (the code already drawn) and reports what it did, rejected
    /// or not. The surfaces use the named use cases above; this is for replaying scripted
    /// commands (tests, tools).
    pub async fn execute(
        &self,
        user: &UserId,
        owner: &ResourceOwner,
        command: Command,
    ) -> Result<Executed, AppError> {
        self.execute_from(user, owner, command, None).await
    }

    /// `execute`, for a request from `client`.
    pub async fn execute_from(
        &self,
        user: &UserId,
        owner: &ResourceOwner,
        command: Command,
        client: Option<IpAddr>,
    ) -> Result<Executed, AppError> {
        let job = Job {
            user: user.clone(),
            owner: owner.clone(),
            now: self.now(),
            command,
            delivered_message: None,
            client,
        };
        self.inner.writer.execute(job).await
    }

    /// Ready when a read round trip and an (empty) write transaction both succeed in time:
    /// a write path that is stuck or gone is not ready, even when reads work.
    pub async fn ready(&self) -> Result<(), AppError> {
        self.inner.store.ping().await?;
        match tokio::time::timeout(READY_TIMEOUT, self.inner.writer.probe()).await {
            Ok(result) => result,
            Err(_) => Err(AppError::WriterGone),
        }
    }

    async fn change(
        &self,
        user: &UserId,
        owner: &ResourceOwner,
        command: Command,
        client: Option<IpAddr>,
    ) -> Result<Change, AppError> {
        crate::faults::panic_if_asked(user.as_ref(), "service");
        let asked_for = match &command {
            Command::Set { phone, .. } => Some(phone.clone()),
            _ => None,
        };
        let done = self.execute_from(user, owner, command, client).await?;
        if let Err(refused) = &done.outcome {
            // A refused Set leaves the old number in the state; the refused one is asked for.
            let to = asked_for.as_ref().or(done.state.phone.as_ref());
            self.count_refusal(refused, to.and_then(|p| NumberFacts::of(p).region));
        }
        done.outcome?;
        Ok(Change {
            sequence: done.state.sequence,
            changed_at: done.state.changed_at.unwrap_or_default(),
        })
    }

    /// Counts a refused send by rule and region; an open circuit breaker is an error for
    /// the operator (the bill is at stake), logged once a minute per process.
    fn count_refusal(&self, refused: &DomainError, region: Option<Region>) {
        let Some(rule) = refused.rule() else {
            return;
        };
        self.inner.metrics.count_refusal(rule, region);
        if matches!(rule, Rule::GlobalBreaker | Rule::RegionBreaker) {
            let minute = self.now().div_euclid(60_000);
            if self.inner.breaker_logged.swap(minute, Ordering::Relaxed) != minute {
                tracing::error!(
                    %rule,
                    region = %region.map(|r| r.to_string()).unwrap_or_default(),
                    "SMS circuit breaker open: new codes are refused until the window ends"
                );
            }
        }
    }

    fn new_code(&self, language: Language) -> NewCode {
        if self.inner.twilio_verify.is_some() {
            return NewCode::TwilioVerify { language };
        }
        let plain = generate_code(&self.inner.policies.code, os_random);
        NewCode::Local {
            hash: self.inner.hasher.hash(&plain),
            plain,
            language,
        }
    }
}
