//! The SMS outbox worker: claims due messages with a lease, delivers them through the
//! provider, and records the result through the application service. Nothing is deleted;
//! failures retry or are parked.
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;

use crate::app::{AppError, PhoneService};
use crate::clock::Millis;
use crate::config::OutboxSettings;
use crate::domain::{ResourceOwner, UserId, os_random};
use crate::metrics::Metrics;
use crate::sealed_sms::SmsSealer;
use crate::sms::{Provider, SendError};
use crate::store::{ClaimedSms, OutboxSettle};

pub struct Worker {
    pub service: PhoneService,
    pub provider: Provider,
    pub sealer: SmsSealer,
    pub settings: OutboxSettings,
    pub metrics: Arc<Metrics>,
}

const DROP_REASON: &str = "code replaced, consumed or expired";

/// What happened to one claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    Retrying,
    Parked,
    Dropped,
}

/// A delivery that could not be settled stays claimed until its lease ends, then is retried.
fn log_outcome(done: Result<Result<Delivery, AppError>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "SMS delivery step failed; retried after the lease")
        }
        Err(e) => tracing::error!(error = %e, "SMS delivery task failed; retried after the lease"),
    }
}

/// Exponential backoff with ±25 % jitter, capped.
fn backoff_ms(settings: &OutboxSettings, attempts_before: u32) -> i64 {
    let base = settings.base_backoff.as_millis().max(1) as f64;
    let exp = base * 2f64.powi(attempts_before.min(30) as i32);
    let capped = exp.min(settings.max_backoff.as_millis() as f64);
    let mut b = [0u8; 2];
    os_random(&mut b);
    let jitter = (u16::from_le_bytes(b) as f64 / u16::MAX as f64) * 0.5 + 0.75;
    (capped * jitter) as i64
}

impl Worker {
    /// Claims what is due (up to `batch_size`) and tries each once, up to `concurrency` at a
    /// time; returns what happened to each, in claim order.
    #[tracing::instrument(skip_all)]
    pub async fn deliver_next(&self) -> Result<Vec<Delivery>, AppError> {
        let claimed = self.claim(self.settings.batch_size as usize).await?;
        futures::stream::iter(claimed)
            .map(|msg| self.deliver_one(msg))
            .buffered(self.settings.concurrency)
            .try_collect()
            .await
    }

    async fn claim(&self, limit: usize) -> Result<Vec<ClaimedSms>, AppError> {
        let now = self.service.now();
        let lease_until = now + self.settings.lease.as_millis() as i64;
        let limit = limit.min(self.settings.batch_size as usize) as u32;
        Ok(self
            .service
            .store()
            .claim_due(now, lease_until, limit)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(message_id = %claimed.id, to = %claimed.recipient_masked))]
    async fn deliver_one(&self, claimed: ClaimedSms) -> Result<Delivery, AppError> {
        let now = self.service.now();
        let Some(user) = UserId::parse(&claimed.user_id) else {
            return self
                .park(&claimed, "stored user id is unreadable".into(), now)
                .await;
        };
        let Some(owner) = ResourceOwner::parse(&claimed.resource_owner) else {
            // An event needs its owner; inventing one would put a wrong fact in the log.
            return self
                .park(&claimed, "stored resource owner is unreadable".into(), now)
                .await;
        };
        let Some(msg) = self.sealer.open(&claimed.payload) else {
            // Wrong key or damaged row: no retry can help, and nothing may be guessed.
            return self
                .park(&claimed, "payload cannot be decrypted".into(), now)
                .await;
        };
        if msg.code.is_empty() != self.provider.makes_codes() {
            // Queued before Verify mode was switched on or off: the provider in use can
            // neither send a code made here through Verify nor make one for a plain SMS.
            return self
                .park(
                    &claimed,
                    format!(
                        "queued for another SMS mode; the {} provider cannot send it",
                        self.provider.name()
                    ),
                    now,
                )
                .await;
        }
        if !self
            .service
            .delivery_wanted(claimed.user_state.as_deref(), claimed.code_sequence)?
        {
            tracing::info!("code was replaced, used or expired before delivery; message dropped");
            let drop = OutboxSettle::Drop {
                reason: DROP_REASON.into(),
            };
            self.service.store().settle(&claimed.id, &drop, now).await?;
            self.metrics.sms_dropped.inc();
            return Ok(Delivery::Dropped);
        }
        match self.provider.send(&claimed.id, &msg).await {
            Ok(accepted) => {
                let sid = accepted.verification_sid;
                self.service
                    .record_delivery(
                        &user,
                        &owner,
                        &claimed.id,
                        claimed.code_sequence,
                        sid.clone(),
                    )
                    .await?;
                // The verification sid is Twilio's handle for support cases, not a secret.
                tracing::info!(
                    provider = self.provider.name(),
                    verification_sid = sid.as_deref(),
                    "SMS delivered"
                );
                self.metrics.sms_sent.inc();
                Ok(Delivery::Delivered)
            }
            Err(SendError::Permanent { reason }) => {
                self.metrics.sms_failed.inc();
                self.park(&claimed, reason, now).await
            }
            Err(err @ SendError::Transient { .. }) => {
                self.metrics.sms_failed.inc();
                let SendError::Transient {
                    reason,
                    retry_after,
                } = err
                else {
                    unreachable!()
                };
                let attempts = claimed.attempts + 1;
                let age_ms = now - claimed.created_at;
                if attempts >= self.settings.max_attempts
                    || age_ms >= self.settings.max_age.as_millis() as i64
                {
                    return self
                        .park(
                            &claimed,
                            format!("gave up after {attempts} attempts: {reason}"),
                            now,
                        )
                        .await;
                }
                let wait = backoff_ms(&self.settings, claimed.attempts)
                    .max(retry_after.map(|d| d.as_millis() as i64).unwrap_or(0));
                tracing::warn!(attempts, retry_in_ms = wait, reason = %reason, "SMS delivery failed; will retry");
                let retry = OutboxSettle::Retry {
                    next_attempt_at: now + wait,
                    error: reason,
                };
                self.service
                    .store()
                    .settle(&claimed.id, &retry, now)
                    .await?;
                self.metrics.sms_retried.inc();
                Ok(Delivery::Retrying)
            }
        }
    }

    /// Drops, in one statement, the claimed messages whose code is no longer wanted (a user
    /// who sets numbers faster than they are sent leaves many), and returns the others.
    async fn drop_unwanted(&self, claimed: Vec<ClaimedSms>) -> Vec<ClaimedSms> {
        let (wanted, unwanted): (Vec<_>, Vec<_>) = claimed.into_iter().partition(|m| {
            // A state that does not read back is left to `deliver_one`, which reports it.
            self.service
                .delivery_wanted(m.user_state.as_deref(), m.code_sequence)
                .unwrap_or(true)
        });
        if unwanted.is_empty() {
            return wanted;
        }
        let ids: Vec<&str> = unwanted.iter().map(|m| m.id.as_str()).collect();
        let now = self.service.now();
        match self.service.store().drop_many(&ids, DROP_REASON, now).await {
            Ok(()) => {
                tracing::info!(
                    messages = ids.len(),
                    "codes were replaced, used or expired before delivery; messages dropped"
                );
                self.metrics.sms_dropped.inc_by(ids.len() as u64);
            }
            // Still leased: claimed again when the lease ends.
            Err(e) => {
                tracing::error!(error = %e, "dropping unwanted SMS failed; retried after the lease")
            }
        }
        wanted
    }

    async fn park(
        &self,
        claimed: &ClaimedSms,
        error: String,
        now: Millis,
    ) -> Result<Delivery, AppError> {
        tracing::error!(error = %error, "SMS parked; it will not be retried");
        let park = OutboxSettle::Park { error };
        self.service.store().settle(&claimed.id, &park, now).await?;
        self.metrics.sms_parked.inc();
        Ok(Delivery::Parked)
    }

    /// Runs until `shutdown` turns true, keeping up to `concurrency` deliveries in flight: a
    /// free slot is filled as soon as one finishes, so a slow or timing-out provider call holds
    /// only its own slot. Sleeps, when nothing is due, until woken by a new message or the
    /// poll interval. On shutdown it claims nothing more and lets what is in flight finish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let poll = self.settings.poll_interval;
        let limit = self.settings.concurrency;
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let notify = self.service.outbox_wakeup();
            let wakeup = notify.notified();
            let free = limit - in_flight.len();
            let mut more_due = false;
            if free > 0 {
                match self.claim(free).await {
                    Ok(claimed) => {
                        more_due = claimed.len() == free.min(self.settings.batch_size as usize);
                        for msg in self.drop_unwanted(claimed).await {
                            let worker = self.clone();
                            in_flight.spawn(async move { worker.deliver_one(msg).await });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "outbox claim failed; will retry"),
                }
            }
            if more_due && in_flight.len() < limit {
                continue;
            }
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    log_outcome(done);
                    // Every slot that is free by now is filled by one claim, not one each.
                    while let Some(done) = in_flight.try_join_next() {
                        log_outcome(done);
                    }
                }
                _ = wakeup => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        while let Some(done) = in_flight.join_next().await {
            log_outcome(done);
        }
        tracing::info!("outbox worker stopped");
    }
}
