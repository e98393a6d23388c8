//! SQL the two engines share (`$n` placeholders, types both read alike) and the typed rows
//! the queries return. Statements that differ per engine live in that engine's file.

/// The projection row of one user, for reads outside a write.
pub(super) const LOAD_STATE: &str = "SELECT state FROM phones WHERE user_id = $1";

pub(super) const EVENTS: &str = "SELECT sequence, event_type, payload, created_at, resource_owner
     FROM events WHERE aggregate_id = $1 ORDER BY sequence";

pub(super) const SETTLE_RETRY: &str =
    "UPDATE sms_outbox SET attempts = attempts + 1, next_attempt_at = $2,
            lease_until = NULL, last_error = $3, updated_at = $4
     WHERE id = $1 AND status = 'pending'";

pub(super) const SETTLE_PARK: &str =
    "UPDATE sms_outbox SET status = 'parked', attempts = attempts + 1, payload = NULL,
            lease_until = NULL, last_error = $2, updated_at = $3
     WHERE id = $1 AND status = 'pending'";

pub(super) const SETTLE_DROP: &str =
    "UPDATE sms_outbox SET status = 'dropped', payload = NULL, lease_until = NULL,
            last_error = $2, updated_at = $3
     WHERE id = $1 AND status = 'pending'";

pub(super) const OUTBOX: &str =
    "SELECT id, user_id, recipient_masked, status, attempts, next_attempt_at, last_error,
            CAST(CASE WHEN payload IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_payload
     FROM sms_outbox ORDER BY created_at, code_sequence, id";

pub(super) const QUEUE_STATS: &str = "SELECT
       CAST(COALESCE(SUM(CASE WHEN status = 'pending' AND next_attempt_at <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS due,
       CAST(COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending,
       CAST(COALESCE(SUM(CASE WHEN status = 'parked' THEN 1 ELSE 0 END), 0) AS BIGINT) AS parked,
       MIN(CASE WHEN status = 'pending' AND next_attempt_at <= $1 THEN created_at END) AS oldest_due
     FROM sms_outbox";

pub(super) const PING: &str = "SELECT 1";

/// Counters whose window ended count for nothing any more.
pub(super) const PRUNE_COUNTERS: &str = "DELETE FROM send_counters WHERE expires_at <= $1";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct CounterRow {
    pub counter_key: String,
    pub window_start: i64,
    pub count: i64,
}

/// A row of a batch's first read: a user's state, or a send counter's count.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct LoadRow {
    pub user_id: Option<String>,
    pub state: Option<String>,
    pub counter_key: Option<String>,
    pub window_start: Option<i64>,
    pub count: Option<i64>,
}

/// The states and counts of a batch's first read.
pub(super) type Loaded = (Vec<(String, String)>, Vec<CounterRow>);

impl LoadRow {
    pub(super) fn split(rows: Vec<LoadRow>) -> Loaded {
        let mut states = Vec::new();
        let mut counts = Vec::new();
        for r in rows {
            match (r.user_id, r.state, r.counter_key) {
                (Some(user), Some(state), _) => states.push((user, state)),
                (_, _, Some(counter_key)) => counts.push(CounterRow {
                    counter_key,
                    window_start: r.window_start.unwrap_or_default(),
                    count: r.count.unwrap_or_default(),
                }),
                _ => {}
            }
        }
        (states, counts)
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    pub sequence: i64,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
    pub resource_owner: String,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ClaimRow {
    pub id: String,
    pub user_id: String,
    pub resource_owner: String,
    pub code_sequence: i64,
    pub recipient_masked: String,
    pub payload: Option<Vec<u8>>,
    pub attempts: i64,
    pub created_at: i64,
    pub state: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct OutboxListRow {
    pub id: String,
    pub user_id: String,
    pub recipient_masked: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub has_payload: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct QueueStatsRow {
    pub due: i64,
    pub pending: i64,
    pub parked: i64,
    pub oldest_due: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct SecretsRow {
    pub signing_key: String,
    pub code_key: String,
    pub outbox_key: String,
}
