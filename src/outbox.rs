//! The SMS outbox worker: claims due messages with a lease, delivers them through the
//! provider, and records the result. Nothing is deleted; failures retry or are parked.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::clock::{Millis, SharedClock};
use crate::config::OutboxSettings;
use crate::crypto::OutboxCipher;
use crate::domain::{Decision, Event, ResourceOwner, SmsToSend, UserId, os_random};
use crate::metrics::Metrics;
use crate::sms::{Provider, SendError, SmsMessage};
use crate::store::{ClaimedSms, Command, OutboxSettle, SmsSealer, Store};

/// Seals and opens outbox payloads: the whole message, code included, encrypted.
pub struct OutboxCodec {
    cipher: OutboxCipher,
    template: String,
}

impl OutboxCodec {
    pub fn new(key: &[u8; 32], template: &str) -> Self {
        Self {
            cipher: OutboxCipher::new(key),
            template: template.to_owned(),
        }
    }

    pub fn open(&self, sealed: &[u8]) -> Option<SmsMessage> {
        serde_json::from_slice(&self.cipher.open(sealed)?).ok()
    }
}

impl SmsSealer for OutboxCodec {
    fn seal(&self, sms: &SmsToSend, event_type: &'static str) -> Vec<u8> {
        let msg = SmsMessage {
            to: sms.to.as_ref().to_owned(),
            text: self.template.replace("{code}", &sms.code),
            code: sms.code.clone(),
            event_type: event_type.to_owned(),
        };
        self.cipher
            .seal(&serde_json::to_vec(&msg).expect("plain struct"))
    }
}

pub struct Worker {
    pub store: Store,
    pub provider: Provider,
    pub codec: Arc<OutboxCodec>,
    pub clock: SharedClock,
    pub settings: OutboxSettings,
    pub metrics: Arc<Metrics>,
    pub wakeup: Arc<Notify>,
}

/// What happened to one claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    Retrying,
    Parked,
    Dropped,
}

/// Exponential backoff with ±25 % jitter, capped.
fn backoff_ms(settings: &OutboxSettings, attempts_before: u32) -> i64 {
    let base = settings.base_backoff_ms.max(1) as f64;
    let exp = base * 2f64.powi(attempts_before.min(30) as i32);
    let capped = exp.min(settings.max_backoff_secs as f64 * 1000.0);
    let mut b = [0u8; 2];
    os_random(&mut b);
    let jitter = (u16::from_le_bytes(b) as f64 / u16::MAX as f64) * 0.5 + 0.75;
    (capped * jitter) as i64
}

impl Worker {
    /// Claims what is due and tries each once; returns what happened to each.
    #[tracing::instrument(skip_all)]
    pub async fn deliver_next(&self) -> Result<Vec<Delivery>, crate::store::StoreError> {
        self.deliver_until(&|| false).await
    }

    /// As `deliver_next`, but once `stopping()` turns true the claims not yet tried are
    /// released, so another worker takes them without waiting for the lease.
    async fn deliver_until(
        &self,
        stopping: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<Delivery>, crate::store::StoreError> {
        let now = self.clock.now_ms();
        let lease_until = now + self.settings.lease_secs as i64 * 1000;
        let claimed = self
            .store
            .claim_due(now, lease_until, self.settings.batch_size)
            .await?;
        let mut out = Vec::with_capacity(claimed.len());
        let mut rest = claimed.into_iter();
        for msg in rest.by_ref() {
            out.push(self.deliver_one(msg).await?);
            if stopping() {
                break;
            }
        }
        let left: Vec<String> = rest.map(|m| m.id).collect();
        if !left.is_empty() {
            self.store.release(&left).await?;
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(message_id = %claimed.id, to = %claimed.recipient_masked))]
    async fn deliver_one(&self, claimed: ClaimedSms) -> Result<Delivery, crate::store::StoreError> {
        let now = self.clock.now_ms();
        let Some(user) = UserId::parse(&claimed.user_id) else {
            return self
                .park(&claimed, "stored user id is unreadable".into(), now)
                .await;
        };
        let Some(msg) = self.codec.open(&claimed.payload) else {
            // Wrong key or damaged row: no retry can help, and nothing may be guessed.
            return self
                .park(&claimed, "payload cannot be decrypted".into(), now)
                .await;
        };
        let state = self.store.phone(&user).await?.unwrap_or_default();
        if !state.code_still_current(claimed.code_sequence, now) {
            tracing::info!("code was replaced, used or expired before delivery; message dropped");
            self.store
                .settle(
                    &claimed.id,
                    OutboxSettle::Drop {
                        reason: "code replaced, consumed or expired".into(),
                    },
                    now,
                )
                .await?;
            self.metrics.sms_dropped.inc();
            return Ok(Delivery::Dropped);
        }
        match self.provider.send(&claimed.id, &msg).await {
            Ok(()) => {
                let owner = ResourceOwner::parse(&claimed.resource_owner)
                    .unwrap_or_else(|| ResourceOwner::parse("unknown").expect("valid id"));
                self.store
                    .execute(Command {
                        user,
                        owner,
                        now: self.clock.now_ms(),
                        decide: Box::new(|_| Decision {
                            events: vec![Event::CodeSent],
                            outcome: Ok(()),
                            sms: None,
                        }),
                        delivered_message: Some(claimed.id.clone()),
                    })
                    .await?;
                tracing::info!(provider = self.provider.name(), "SMS delivered");
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
                    || age_ms >= self.settings.max_age_secs as i64 * 1000
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
                self.store
                    .settle(
                        &claimed.id,
                        OutboxSettle::Retry {
                            next_attempt_at: now + wait,
                            error: reason,
                        },
                        now,
                    )
                    .await?;
                self.metrics.sms_retried.inc();
                Ok(Delivery::Retrying)
            }
        }
    }

    async fn park(
        &self,
        claimed: &ClaimedSms,
        error: String,
        now: Millis,
    ) -> Result<Delivery, crate::store::StoreError> {
        tracing::error!(error = %error, "SMS parked; it will not be retried");
        self.store
            .settle(&claimed.id, OutboxSettle::Park { error }, now)
            .await?;
        self.metrics.sms_parked.inc();
        Ok(Delivery::Parked)
    }

    /// Runs until `shutdown` turns true: delivers, then sleeps until woken by a new message,
    /// the next due time or the poll interval.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wakeup = self.wakeup.notified();
            let mut busy = false;
            let stop_flag = shutdown.clone();
            match self.deliver_until(&move || *stop_flag.borrow()).await {
                Ok(done) => busy = !done.is_empty(),
                Err(e) => tracing::error!(error = %e, "outbox worker step failed; will retry"),
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = wakeup => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("outbox worker stopped");
    }
}
