//! The event store: event log, phone projection and SMS outbox behind one interface.
//! Only this module knows which database is in use.
mod sqlite;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::Millis;
use crate::domain::{Decision, DomainError, Event, PhoneState, ResourceOwner, SmsToSend, UserId};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the work; retrying later may help.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Another writer got there first, and retrying did not resolve it.
    #[error("concurrent writers collided")]
    Conflict,
    /// Stored data we cannot read back.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("could not open the database: {0}")]
    Setup(String),
}

impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        match e {
            StoreError::Unavailable(_) | StoreError::Setup(_) => {
                crate::error::ApiError::Unavailable
            }
            StoreError::Conflict => crate::error::ApiError::Aborted,
            StoreError::Corrupt(_) => crate::error::ApiError::Internal,
        }
    }
}

/// Seals an SMS for the outbox (the store never sees plain codes at rest).
pub trait SmsSealer: Send + Sync + 'static {
    fn seal(&self, sms: &SmsToSend, event_type: &'static str) -> Vec<u8>;
}

pub type DecideFn = Box<dyn FnOnce(&PhoneState) -> Decision + Send>;

/// One command on one user's phone: the store loads the state, the pure `decide` answers,
/// and events, projection and outbox row commit together.
pub struct Command {
    pub user: UserId,
    pub owner: ResourceOwner,
    pub now: Millis,
    pub decide: DecideFn,
    /// Marks this outbox message delivered in the same transaction (the `code.sent` path);
    /// when it was no longer pending, no event is written.
    pub delivered_message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommandResult {
    pub outcome: Result<(), DomainError>,
    /// The state after the command (unchanged when it wrote nothing).
    pub state: PhoneState,
    pub wrote_events: bool,
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub sequence: u64,
    pub event_type: String,
    pub payload: String,
    pub created_at: Millis,
    pub resource_owner: String,
    pub event: Option<Event>,
}

/// An outbox message claimed for delivery.
#[derive(Debug, Clone)]
pub struct ClaimedSms {
    pub id: String,
    pub user_id: String,
    pub resource_owner: String,
    pub code_sequence: u64,
    pub recipient_masked: String,
    pub payload: Vec<u8>,
    /// Attempts made before this one.
    pub attempts: u32,
    pub created_at: Millis,
}

/// An outbox row as operators see it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: String,
    pub user_id: String,
    pub recipient_masked: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
    pub has_payload: bool,
}

/// How a delivery attempt ended, other than success.
#[derive(Debug, Clone)]
pub enum OutboxSettle {
    Retry {
        next_attempt_at: Millis,
        error: String,
    },
    Park {
        error: String,
    },
    Drop {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    pub due: u64,
    pub pending: u64,
    pub parked: u64,
    pub oldest_due_age_ms: Millis,
}

#[derive(Clone)]
pub enum Store {
    Sqlite(Arc<SqliteStore>),
}

impl Store {
    pub async fn connect(
        url: &str,
        sealer: Arc<dyn SmsSealer>,
        outbox_wakeup: Arc<Notify>,
    ) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            return Ok(Store::Sqlite(Arc::new(
                SqliteStore::connect(url, sealer, outbox_wakeup).await?,
            )));
        }
        Err(StoreError::Setup(
            "only sqlite: URLs are supported by this build".to_owned(),
        ))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
        }
    }

    #[tracing::instrument(skip_all, fields(user = %cmd.user))]
    pub async fn execute(&self, cmd: Command) -> Result<CommandResult, StoreError> {
        match self {
            Store::Sqlite(s) => s.execute(cmd).await,
        }
    }

    /// The projection row: state and the resource owner last written.
    pub async fn phone(&self, user: &UserId) -> Result<Option<PhoneState>, StoreError> {
        match self {
            Store::Sqlite(s) => s.phone(user.as_ref()).await,
        }
    }

    pub async fn events(&self, user: &UserId) -> Result<Vec<StoredEvent>, StoreError> {
        match self {
            Store::Sqlite(s) => s.events(user.as_ref()).await,
        }
    }

    pub async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimedSms>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim_due(now, lease_until, limit).await,
        }
    }

    pub async fn settle(&self, id: &str, how: OutboxSettle, now: Millis) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.settle(id, how, now).await,
        }
    }

    /// Gives claims back (graceful shutdown) so another worker need not wait for the lease.
    pub async fn release(&self, ids: &[String]) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.release(ids).await,
        }
    }

    pub async fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.outbox().await,
        }
    }

    pub async fn queue_stats(&self, now: Millis) -> Result<QueueStats, StoreError> {
        match self {
            Store::Sqlite(s) => s.queue_stats(now).await,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
        }
    }

    /// The earliest time a pending message becomes due, so the worker can sleep until then.
    pub async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        match self {
            Store::Sqlite(s) => s.next_due().await,
        }
    }
}
