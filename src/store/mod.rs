//! The event store: event log, phone projection and SMS outbox behind one interface.
//! Only this module knows which database is in use.
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::Millis;
use crate::domain::{Decision, DomainError, Event, PhoneState, ResourceOwner, SmsToSend, UserId};

pub use postgres::{PgStore, PgTuning, shared_secrets};
pub use sqlite::SqliteStore;

pub(crate) fn new_message_id() -> String {
    let mut b = [0u8; 16];
    crate::domain::os_random(&mut b);
    hex::encode(b)
}

/// A failed write: a lost race on the unique (aggregate, sequence) key, or the database.
pub(crate) fn classify(e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        other => StoreError::Unavailable(sqlx::Error::Protocol(other.to_string())),
    }
}

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

/// `Fn`, not `FnOnce`: a backend may re-run the decision when a concurrent writer won.
pub type DecideFn = Box<dyn Fn(&PhoneState) -> Decision + Send + Sync>;

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

/// What one command writes in its transaction: events numbered from `first_seq`, the new
/// projection state, and the SMS to queue.
pub(crate) struct Changes<'a> {
    pub user: &'a str,
    pub owner: &'a str,
    pub at: Millis,
    pub first_seq: u64,
    pub events: &'a [Event],
    pub state: &'a PhoneState,
    pub sms: Option<QueueSms>,
}

/// An outbox row to insert, its message already sealed.
pub(crate) struct QueueSms {
    pub id: String,
    pub code_sequence: u64,
    pub recipient_masked: String,
    pub sealed: Vec<u8>,
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
    Postgres(Arc<PgStore>),
}

/// The same shared query (`sql.rs`) on whichever backend is in use, given its read pool
/// and the pool the outbox worker writes through.
macro_rules! on_pools {
    ($store:expr, |$q:ident, $reads:ident, $maint:ident| $call:expr) => {
        match $store {
            Store::Sqlite(s) => {
                use sqlite::queries as $q;
                let ($reads, $maint) = (&s.reads, &s.maint);
                $call
            }
            Store::Postgres(p) => {
                use postgres::queries as $q;
                let ($reads, $maint) = (&p.pool, &p.pool);
                $call
            }
        }
    };
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl Store {
    pub async fn connect(
        url: &str,
        tuning: &PgTuning,
        sealer: Arc<dyn SmsSealer>,
        outbox_wakeup: Arc<Notify>,
    ) -> Result<Store, StoreError> {
        if is_postgres_url(url) {
            let store = PgStore::connect(url, tuning, sealer, outbox_wakeup).await?;
            return Ok(Store::Postgres(Arc::new(store)));
        }
        let store = SqliteStore::connect(url, sealer, outbox_wakeup).await?;
        Ok(Store::Sqlite(Arc::new(store)))
    }

    #[tracing::instrument(skip_all, fields(user = %cmd.user))]
    pub async fn execute(&self, cmd: Command) -> Result<CommandResult, StoreError> {
        match self {
            Store::Sqlite(s) => s.execute(cmd).await,
            Store::Postgres(p) => p.execute(cmd).await,
        }
    }

    /// The projection row's state, if the user has any event.
    pub async fn phone(&self, user: &UserId) -> Result<Option<PhoneState>, StoreError> {
        on_pools!(self, |q, reads, _m| q::phone(reads, user.as_ref()).await)
    }

    pub async fn events(&self, user: &UserId) -> Result<Vec<StoredEvent>, StoreError> {
        on_pools!(self, |q, reads, _m| q::events(reads, user.as_ref()).await)
    }

    pub async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimedSms>, StoreError> {
        on_pools!(self, |q, _r, maint| q::claim_due(
            maint,
            now,
            lease_until,
            limit
        )
        .await)
    }

    pub async fn settle(&self, id: &str, how: OutboxSettle, now: Millis) -> Result<(), StoreError> {
        on_pools!(self, |q, _r, maint| q::settle(maint, id, how, now).await)
    }

    /// Gives claims back (graceful shutdown) so another worker need not wait for the lease.
    pub async fn release(&self, ids: &[String]) -> Result<(), StoreError> {
        on_pools!(self, |q, _r, maint| q::release(maint, ids).await)
    }

    pub async fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        on_pools!(self, |q, reads, _m| q::outbox(reads).await)
    }

    pub async fn queue_stats(&self, now: Millis) -> Result<QueueStats, StoreError> {
        on_pools!(self, |q, reads, _m| q::queue_stats(reads, now).await)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pools!(self, |q, reads, _m| q::ping(reads).await)
    }
}
