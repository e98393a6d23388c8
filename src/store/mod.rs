//! Storage: the event log, the phone projection, the SMS outbox and the server secrets, in
//! SQLite or PostgreSQL. It knows SQL and transactions only; what to write is decided above.
mod postgres;
mod queries;
mod sqlite;

use std::collections::{HashMap, HashSet};

use crate::clock::Millis;
use crate::domain::{CounterId, Event, PhoneState, StateFormatError};

pub use postgres::{PgStore, PgTuning};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the work for now (connection, pool, I/O,
    /// locks, a missing table); retrying later may help.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Another writer took the same (user, sequence) first.
    #[error("a concurrent writer took the same sequence")]
    Conflict(#[source] sqlx::Error),
    /// The database holds or returned something this build cannot use (a violated
    /// constraint, an undecodable column): retrying does not help.
    #[error("database answered with data this build cannot use")]
    Data(#[source] sqlx::Error),
    /// A stored phone state that does not read back.
    #[error("stored phone state of a user is damaged")]
    DamagedState(#[source] StateFormatError),
    /// A stored server secret that does not read back.
    #[error("stored server secret `{0}` is damaged")]
    DamagedSecret(&'static str),
    #[error("could not open the database: {0}")]
    Setup(String),
}

impl StoreError {
    /// Sorts a database error by what helps: waiting (unavailable), re-running (conflict),
    /// or nothing (data).
    fn classify(e: sqlx::Error) -> StoreError {
        use sqlx::Error as E;
        match &e {
            E::Database(db) if db.is_unique_violation() => StoreError::Conflict(e),
            // PostgreSQL: serialization failure and deadlock; re-running resolves both.
            E::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")) => {
                StoreError::Conflict(e)
            }
            E::Database(db)
                if !matches!(db.kind(), sqlx::error::ErrorKind::Other)
                    || is_constraint_code(db.code().as_deref()) =>
            {
                StoreError::Data(e)
            }
            E::Database(_)
            | E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed
            | E::Configuration(_) => StoreError::Unavailable(e),
            _ => StoreError::Data(e),
        }
    }

    /// Whether the request may succeed later unchanged (503 rather than 500).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Setup(_))
    }
}

/// Constraint failures raised by a trigger or a CHECK: SQLite's SQLITE_CONSTRAINT family
/// (19 and its extended codes), PostgreSQL's class 23 and `raise_exception` (P0001).
fn is_constraint_code(code: Option<&str>) -> bool {
    match code {
        Some(c) if c.starts_with("23") || c == "P0001" => true,
        Some(c) => c.parse::<i32>().is_ok_and(|n| n & 0xff == 19),
        None => false,
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An event as stored, with its decoded form when this build knows the type.
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
    /// The user's stored phone state as of the claim (read with it, so whether the code is
    /// still wanted costs no second query).
    pub user_state: Option<String>,
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

/// The three server secrets as stored (base64), shared by every replica on PostgreSQL.
#[derive(Clone)]
pub struct StoredSecrets {
    pub signing_key: String,
    pub code_key: String,
    pub outbox_key: String,
}

/// An event to append.
pub struct NewEvent<'a> {
    pub user: &'a str,
    pub sequence: u64,
    pub event_type: &'static str,
    pub payload: String,
    pub at: Millis,
    pub owner: &'a str,
}

/// An outbox row to insert, its message already sealed.
pub struct NewOutboxRow<'a> {
    pub id: String,
    pub user: &'a str,
    pub owner: &'a str,
    pub code_sequence: u64,
    pub recipient_masked: String,
    pub sealed: Vec<u8>,
    pub at: Millis,
}

/// Everything a batch of commands writes, stored in one statement per table (one in all on
/// PostgreSQL), however many commands the batch holds.
#[derive(Default)]
pub struct BatchWrites<'a> {
    pub events: Vec<NewEvent<'a>>,
    /// The new projection state of each user who got events, once per user.
    pub phones: Vec<(&'a str, String)>,
    pub outbox: Vec<NewOutboxRow<'a>>,
    /// What the batch's sends add to the shared send counters.
    pub counters: Vec<CounterAdd<'a>>,
}

/// Sends to add to one counter.
pub struct CounterAdd<'a> {
    pub id: &'a CounterId,
    pub count: u64,
    pub expires_at: Millis,
    /// The counter's limit. PostgreSQL, which reads counts without locking them, adds to
    /// a counter only while the sum stays within it: other writers' sends in between are
    /// fine up to the limit, and past it the batch is re-run from its read.
    pub max: u64,
    /// Found when the batch read the counts. PostgreSQL inserts one that was not, failing
    /// on the key (and re-running the batch) if another writer created it meanwhile.
    pub exists: bool,
}

impl BatchWrites<'_> {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.phones.is_empty()
            && self.outbox.is_empty()
            && self.counters.is_empty()
    }
}

/// The users' states as of a write transaction; a state that does not read back is an
/// error for that user only.
pub type LoadedStates = HashMap<String, std::result::Result<PhoneState, StateFormatError>>;

#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// A batch's write: SQLite's is a transaction (drop it to roll back); PostgreSQL's reads
/// outside one and writes in one statement that fails if what it read changed (drop it
/// and nothing was written).
pub enum WriteTx {
    Sqlite(sqlite::SqliteTx),
    Postgres(postgres::PgBatch),
}

fn counter_counts(rows: Vec<queries::CounterRow>) -> HashMap<CounterId, u64> {
    rows.into_iter()
        .map(|r| {
            let id = CounterId {
                key: r.counter_key,
                window_start: r.window_start,
            };
            (id, r.count.max(0) as u64)
        })
        .collect()
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl Store {
    /// Opens (SQLite) or connects to (PostgreSQL) the database and applies migrations.
    pub async fn connect(url: &str, tuning: &PgTuning) -> Result<Store> {
        if is_postgres_url(url) {
            return Ok(Store::Postgres(PgStore::connect(url, tuning).await?));
        }
        Ok(Store::Sqlite(SqliteStore::connect(url).await?))
    }

    /// Write transactions this process runs at once: one on SQLite, which serialises every
    /// write anyway; `database_writers` on PostgreSQL.
    pub fn writers(&self) -> usize {
        match self {
            Store::Sqlite(_) => 1,
            Store::Postgres(p) => p.writers(),
        }
    }

    /// Starts and commits an empty write transaction (SQLite: `BEGIN IMMEDIATE` on the one
    /// writer connection): readiness.
    pub async fn empty_transaction(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.begin().await?.commit().await,
            Store::Postgres(p) => p.empty_transaction().await,
        }
    }

    /// Starts a batch's write and reads the states of `users` (each once) and the counts of
    /// `counters` (absent ones are 0). SQLite reads in its write transaction; PostgreSQL
    /// reads without locks, and its write checks that none of it changed. Users without a
    /// row are absent.
    pub async fn begin_loading(
        &self,
        users: &[&str],
        counters: &[(CounterId, Millis)],
    ) -> Result<(WriteTx, LoadedStates, HashMap<CounterId, u64>)> {
        let (tx, (states, counts)) = match self {
            Store::Sqlite(s) => {
                let (tx, loaded) = s.begin_loading(users, counters).await?;
                (WriteTx::Sqlite(tx), loaded)
            }
            Store::Postgres(p) => {
                let (batch, loaded) = p.begin_batch(users, counters).await?;
                (WriteTx::Postgres(batch), loaded)
            }
        };
        let states = states
            .into_iter()
            .map(|(user, text)| (user, PhoneState::from_stored(&text)))
            .collect();
        Ok((tx, states, counter_counts(counts)))
    }

    /// The projection's state, if the user has any event.
    pub async fn phone(&self, user: &str) -> Result<Option<PhoneState>> {
        let text = match self {
            Store::Sqlite(s) => s.load_state(user).await?,
            Store::Postgres(p) => p.load_state(user).await?,
        };
        text.map(|t| PhoneState::from_stored(&t).map_err(StoreError::DamagedState))
            .transpose()
    }

    pub async fn events(&self, user: &str) -> Result<Vec<StoredEvent>> {
        let rows = match self {
            Store::Sqlite(s) => s.events(user).await?,
            Store::Postgres(p) => p.events(user).await?,
        };
        Ok(rows
            .into_iter()
            .map(|r| StoredEvent {
                sequence: r.sequence as u64,
                event: Event::from_stored(&r.event_type, &r.payload),
                event_type: r.event_type,
                payload: r.payload,
                created_at: r.created_at,
                resource_owner: r.resource_owner,
            })
            .collect())
    }

    /// Leases up to `limit` due messages until `lease_until`.
    pub async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimedSms>> {
        let rows = match self {
            Store::Sqlite(s) => s.claim_due(now, lease_until, limit).await?,
            Store::Postgres(p) => p.claim_due(now, lease_until, limit).await?,
        };
        Ok(rows
            .into_iter()
            .map(|r| ClaimedSms {
                id: r.id,
                user_id: r.user_id,
                resource_owner: r.resource_owner,
                code_sequence: r.code_sequence as u64,
                recipient_masked: r.recipient_masked,
                payload: r.payload.unwrap_or_default(),
                attempts: r.attempts as u32,
                created_at: r.created_at,
                user_state: r.state,
            })
            .collect())
    }

    pub async fn settle(&self, id: &str, how: &OutboxSettle, now: Millis) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.settle(id, how, now).await,
            Store::Postgres(p) => p.settle(id, how, now).await,
        }
    }

    /// Drops the pending messages among `ids` in one statement (a settle `Drop` each).
    pub async fn drop_many(&self, ids: &[&str], reason: &str, now: Millis) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.drop_many(ids, reason, now).await,
            Store::Postgres(p) => p.drop_many(ids, reason, now).await,
        }
    }

    pub async fn outbox(&self) -> Result<Vec<OutboxRow>> {
        let rows = match self {
            Store::Sqlite(s) => s.outbox().await?,
            Store::Postgres(p) => p.outbox().await?,
        };
        Ok(rows
            .into_iter()
            .map(|r| OutboxRow {
                id: r.id,
                user_id: r.user_id,
                recipient_masked: r.recipient_masked,
                status: r.status,
                attempts: r.attempts as u32,
                next_attempt_at: r.next_attempt_at,
                last_error: r.last_error,
                has_payload: r.has_payload != 0,
            })
            .collect())
    }

    pub async fn queue_stats(&self, now: Millis) -> Result<QueueStats> {
        let r = match self {
            Store::Sqlite(s) => s.queue_stats(now).await?,
            Store::Postgres(p) => p.queue_stats(now).await?,
        };
        Ok(QueueStats {
            due: r.due as u64,
            pending: r.pending as u64,
            parked: r.parked as u64,
            oldest_due_age_ms: r.oldest_due.map(|t| (now - t).max(0)).unwrap_or(0),
        })
    }

    /// A read round trip.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.ping().await,
            Store::Postgres(p) => p.ping().await,
        }
    }

    /// PostgreSQL only: the secrets every replica shares; `fresh` is stored when none are yet
    /// (the first replica wins). `None` on SQLite, whose secrets live in the data dir.
    pub async fn shared_secrets(&self, fresh: &StoredSecrets) -> Result<Option<StoredSecrets>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(p) => p.shared_secrets(fresh).await.map(Some),
        }
    }
}

impl WriteTx {
    /// Marks outbox messages delivered, returning those that were still pending (on
    /// PostgreSQL, by the write, which fails if one of them no longer is).
    pub async fn mark_delivered(&mut self, ids: &[&str], now: Millis) -> Result<HashSet<String>> {
        let done = match self {
            WriteTx::Sqlite(tx) => tx.mark_delivered(ids, now).await?,
            WriteTx::Postgres(b) => b.still_pending(ids, now).await?,
        };
        Ok(done.into_iter().collect())
    }

    /// The current counts of send counters (absent ones are 0). On PostgreSQL the write
    /// adds to a counter only while it stays within its limit, and creates a missing one
    /// failing on its key if another writer created it first; either failure re-runs the
    /// batch, so the writers of every replica together never exceed a limit.
    pub async fn counts(
        &mut self,
        counters: &[(CounterId, Millis)],
    ) -> Result<HashMap<CounterId, u64>> {
        let rows = match self {
            WriteTx::Sqlite(tx) => tx.counts(counters).await?,
            WriteTx::Postgres(b) => b.counts(counters).await?,
        };
        Ok(counter_counts(rows))
    }

    /// Forgets counters whose window ended by `now`.
    pub async fn prune_counters(&mut self, now: Millis) -> Result<()> {
        match self {
            WriteTx::Sqlite(tx) => tx.prune_counters(now).await,
            WriteTx::Postgres(b) => b.prune_counters(now).await,
        }
    }

    /// Appends the events, replaces the projection rows, queues the SMS and commits.
    pub async fn write_and_commit(self, writes: &BatchWrites<'_>) -> Result<()> {
        match self {
            WriteTx::Sqlite(tx) if writes.is_empty() => tx.commit().await,
            WriteTx::Sqlite(tx) => tx.write_and_commit(writes).await,
            WriteTx::Postgres(b) => b.write(writes).await,
        }
    }
}
