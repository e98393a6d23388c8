//! SQLite: one writer connection (writes are serialised by SQLite anyway; one writer gives
//! the best tail), a read-only pool for Get and listings, and one connection for the outbox
//! worker's bookkeeping.
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::queries::{
    self, ClaimRow, CounterRow, EventRow, LoadRow, Loaded, OutboxListRow, QueueStatsRow,
};
use super::{BatchWrites, OutboxSettle, Result, StoreError};
use crate::clock::Millis;
use crate::domain::CounterId;

const CLAIM: &str = "UPDATE sms_outbox SET lease_until = $1, updated_at = $2
     WHERE id IN (SELECT id FROM sms_outbox
                  WHERE status = 'pending' AND next_attempt_at <= $2
                    AND (lease_until IS NULL OR lease_until <= $2)
                  ORDER BY next_attempt_at LIMIT $3)
     RETURNING id, user_id, resource_owner, code_sequence, recipient_masked, payload, attempts, created_at,
               (SELECT state FROM phones WHERE phones.user_id = sms_outbox.user_id) AS state";

// A batch's rows travel as one JSON array parameter each, unpacked by `json_each`: one
// statement per table per batch instead of one per command (every statement is a thread
// hand-off to sqlx's SQLite worker, the main cost here).

// `BEGIN IMMEDIATE` travels with the batch's first read, and the writes with `COMMIT`:
// sqlx runs every statement of one query in one trip to its worker thread, and binds `$N`
// to the same argument in each.
const BEGIN_AND_LOAD: &str = "BEGIN IMMEDIATE;
     SELECT user_id, state, NULL AS counter_key, NULL AS window_start, NULL AS count
     FROM phones WHERE user_id IN (SELECT value FROM json_each($1))
     UNION ALL
     SELECT NULL, NULL, c.counter_key, c.window_start, c.count
     FROM send_counters c JOIN json_each($2) j
       ON c.counter_key = j.value ->> '$.k' AND c.window_start = j.value ->> '$.w'";

// `+status` keeps SQLite from reaching the rows through the status index, which holds every
// pending message (a backlog of thousands, all scanned): the ids name the rows.
const MARK_DELIVERED: &str =
    "UPDATE sms_outbox SET status = 'delivered', payload = NULL, lease_until = NULL,
            attempts = attempts + 1, last_error = NULL, updated_at = $2
     WHERE id IN (SELECT value FROM json_each($1)) AND +status = 'pending'
     RETURNING id";

// One statement per table, then the commit; an empty array writes no row. `WHERE true`
// tells SQLite's parser an ON CONFLICT belongs to the INSERT, not a join.
const WRITE_AND_COMMIT: &str = "INSERT INTO events (aggregate_id, sequence, event_type, payload, created_at, resource_owner)
     SELECT value ->> '$.u', value ->> '$.s', value ->> '$.t', value ->> '$.p', value ->> '$.a', value ->> '$.o'
     FROM json_each($1);
     INSERT INTO phones (user_id, state)
     SELECT value ->> '$.u', value ->> '$.s' FROM json_each($2) WHERE true
     ON CONFLICT (user_id) DO UPDATE SET state = excluded.state;
     INSERT INTO sms_outbox (id, user_id, resource_owner, code_sequence, recipient_masked,
                             payload, status, attempts, next_attempt_at, created_at, updated_at)
     SELECT value ->> '$.id', value ->> '$.u', value ->> '$.o', value ->> '$.c', value ->> '$.r',
            unhex(value ->> '$.p'), 'pending', 0, value ->> '$.a', value ->> '$.a', value ->> '$.a'
     FROM json_each($3);
     INSERT INTO send_counters (counter_key, window_start, expires_at, count)
     SELECT value ->> '$.k', value ->> '$.w', value ->> '$.e', value ->> '$.n' FROM json_each($4) WHERE true
     ON CONFLICT (counter_key, window_start) DO UPDATE SET count = count + excluded.count;
     COMMIT";

// `+status`: as in `MARK_DELIVERED`.
const DROP_MANY: &str =
    "UPDATE sms_outbox SET status = 'dropped', payload = NULL, lease_until = NULL,
            last_error = $2, updated_at = $3
     WHERE id IN (SELECT value FROM json_each($1)) AND +status = 'pending'";

const COUNTS: &str = "SELECT c.counter_key, c.window_start, c.count
     FROM send_counters c JOIN json_each($1) j
       ON c.counter_key = j.value ->> '$.k' AND c.window_start = j.value ->> '$.w'";

/// Counters as the JSON array the count queries unpack.
fn counter_keys(ids: &[(CounterId, Millis)]) -> String {
    let keys: Vec<serde_json::Value> = ids
        .iter()
        .map(|(id, _)| serde_json::json!({"k": id.key, "w": id.window_start}))
        .collect();
    serde_json::Value::Array(keys).to_string()
}

/// The writer connection, and whether a transaction is open on it.
struct WriterSlot {
    conn: Option<SqliteConnection>,
    in_tx: bool,
}

#[derive(Clone)]
pub struct SqliteStore {
    options: Arc<SqliteConnectOptions>,
    writer: Arc<Mutex<WriterSlot>>,
    reads: SqlitePool,
    maint: SqlitePool,
}

/// A transaction on the writer connection; it holds the connection until commit or drop.
pub struct SqliteTx {
    slot: OwnedMutexGuard<WriterSlot>,
}

fn setup(what: &str, url: &str) -> impl FnOnce(sqlx::Error) -> StoreError {
    let message = format!("{what} {url}");
    move |e| StoreError::Setup(format!("{message}: {e}"))
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Setup(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a power loss may drop the last commits, never corrupt the file.
            .synchronous(SqliteSynchronous::Normal)
            // Statement journals and sorters in memory: a batch's multi-row statements had
            // SQLite create and unlink a file in /var/tmp on every commit.
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(5));
        let maint = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(setup("cannot open", url))?;
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&maint)
            .await
            .map_err(|e| StoreError::Setup(format!("migrations failed: {e}")))?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await
            .map_err(setup("cannot open", url))?;
        Ok(SqliteStore {
            options: Arc::new(options),
            writer: Arc::new(Mutex::new(WriterSlot {
                conn: None,
                in_tx: false,
            })),
            reads,
            maint,
        })
    }

    /// The writer connection, opened again after a transaction was abandoned on it.
    async fn writer(&self) -> Result<OwnedMutexGuard<WriterSlot>> {
        let mut slot = self.writer.clone().lock_owned().await;
        if slot.conn.is_none() {
            slot.conn = Some(
                SqliteConnection::connect_with(&self.options)
                    .await
                    .map_err(StoreError::classify)?,
            );
        }
        Ok(slot)
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front, so a transaction that reads before it
    /// writes cannot fail with "database is locked" halfway.
    pub(super) async fn begin(&self) -> Result<SqliteTx> {
        let mut tx = SqliteTx {
            slot: self.writer().await?,
        };
        sqlx::query("BEGIN IMMEDIATE")
            .execute(tx.conn()?)
            .await
            .map_err(StoreError::classify)?;
        tx.slot.in_tx = true;
        Ok(tx)
    }

    /// Begins a write transaction and reads the states of `users` and the counts of
    /// `counters` in it, in one statement.
    pub(super) async fn begin_loading(
        &self,
        users: &[&str],
        counters: &[(CounterId, Millis)],
    ) -> Result<(SqliteTx, Loaded)> {
        let mut tx = SqliteTx {
            slot: self.writer().await?,
        };
        // Whether the BEGIN took before an error is not known: assume it did, so a failure
        // closes the connection (rolling back) rather than leaving a transaction open.
        tx.slot.in_tx = true;
        let rows: Vec<LoadRow> = sqlx::query_as(BEGIN_AND_LOAD)
            .bind(serde_json::to_string(users).expect("strings"))
            .bind(counter_keys(counters))
            .fetch_all(tx.conn()?)
            .await
            .map_err(StoreError::classify)?;
        Ok((tx, LoadRow::split(rows)))
    }

    pub(super) async fn load_state(&self, user: &str) -> Result<Option<String>> {
        sqlx::query_scalar(queries::LOAD_STATE)
            .bind(user)
            .fetch_optional(&self.reads)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn events(&self, user: &str) -> Result<Vec<EventRow>> {
        sqlx::query_as(queries::EVENTS)
            .bind(user)
            .fetch_all(&self.reads)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimRow>> {
        sqlx::query_as(CLAIM)
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.maint)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn settle(&self, id: &str, how: &OutboxSettle, now: Millis) -> Result<()> {
        let q = match how {
            OutboxSettle::Retry {
                next_attempt_at,
                error,
            } => sqlx::query(queries::SETTLE_RETRY)
                .bind(id)
                .bind(*next_attempt_at)
                .bind(error.as_str())
                .bind(now),
            OutboxSettle::Park { error } => sqlx::query(queries::SETTLE_PARK)
                .bind(id)
                .bind(error.as_str())
                .bind(now),
            OutboxSettle::Drop { reason } => sqlx::query(queries::SETTLE_DROP)
                .bind(id)
                .bind(reason.as_str())
                .bind(now),
        };
        q.execute(&self.maint).await.map_err(StoreError::classify)?;
        Ok(())
    }

    pub(super) async fn drop_many(&self, ids: &[&str], reason: &str, now: Millis) -> Result<()> {
        sqlx::query(DROP_MANY)
            .bind(serde_json::to_string(ids).expect("strings"))
            .bind(reason)
            .bind(now)
            .execute(&self.maint)
            .await
            .map_err(StoreError::classify)?;
        Ok(())
    }

    pub(super) async fn outbox(&self) -> Result<Vec<OutboxListRow>> {
        sqlx::query_as(queries::OUTBOX)
            .fetch_all(&self.reads)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn queue_stats(&self, now: Millis) -> Result<QueueStatsRow> {
        sqlx::query_as(queries::QUEUE_STATS)
            .bind(now)
            .fetch_one(&self.reads)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn ping(&self) -> Result<()> {
        sqlx::query(queries::PING)
            .execute(&self.reads)
            .await
            .map_err(StoreError::classify)?;
        Ok(())
    }
}

/// A transaction dropped unfinished (an error or a panic mid-batch) must not keep SQLite's
/// write lock until the next write comes: its connection is closed at once, which rolls it
/// back, and the next transaction starts on a fresh one.
impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.slot.in_tx {
            tracing::warn!("SQLite writer: unfinished transaction rolled back; reconnecting");
            self.slot.conn = None;
            self.slot.in_tx = false;
        }
    }
}

impl SqliteTx {
    fn conn(&mut self) -> Result<&mut SqliteConnection> {
        self.slot
            .conn
            .as_mut()
            .ok_or(StoreError::Unavailable(sqlx::Error::PoolClosed))
    }

    pub(super) async fn mark_delivered(
        &mut self,
        ids: &[&str],
        now: Millis,
    ) -> Result<Vec<String>> {
        sqlx::query_scalar(MARK_DELIVERED)
            .bind(serde_json::to_string(ids).expect("strings"))
            .bind(now)
            .fetch_all(self.conn()?)
            .await
            .map_err(StoreError::classify)
    }

    /// The one writer serialises every transaction, so reading the counts is enough.
    pub(super) async fn counts(&mut self, ids: &[(CounterId, Millis)]) -> Result<Vec<CounterRow>> {
        sqlx::query_as(COUNTS)
            .bind(counter_keys(ids))
            .fetch_all(self.conn()?)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn prune_counters(&mut self, now: Millis) -> Result<()> {
        sqlx::query(queries::PRUNE_COUNTERS)
            .bind(now)
            .execute(self.conn()?)
            .await
            .map_err(StoreError::classify)?;
        Ok(())
    }

    /// Writes the batch and commits, in one statement.
    pub(super) async fn write_and_commit(mut self, w: &BatchWrites<'_>) -> Result<()> {
        use serde_json::json;
        let events: Vec<_> = w
            .events
            .iter()
            .map(|e| json!({"u": e.user, "s": e.sequence, "t": e.event_type, "p": e.payload, "a": e.at, "o": e.owner}))
            .collect();
        let phones: Vec<_> = w
            .phones
            .iter()
            .map(|(user, state)| json!({"u": user, "s": state}))
            .collect();
        let outbox: Vec<_> = w
            .outbox
            .iter()
            .map(|m| json!({"id": m.id, "u": m.user, "o": m.owner, "c": m.code_sequence, "r": m.recipient_masked, "p": hex::encode(&m.sealed), "a": m.at}))
            .collect();
        let counters: Vec<_> = w
            .counters
            .iter()
            .map(
                |c| json!({"k": c.id.key, "w": c.id.window_start, "e": c.expires_at, "n": c.count}),
            )
            .collect();
        sqlx::query(WRITE_AND_COMMIT)
            .bind(serde_json::Value::Array(events).to_string())
            .bind(serde_json::Value::Array(phones).to_string())
            .bind(serde_json::Value::Array(outbox).to_string())
            .bind(serde_json::Value::Array(counters).to_string())
            .execute(self.conn()?)
            .await
            .map_err(StoreError::classify)?;
        self.slot.in_tx = false;
        Ok(())
    }

    pub(super) async fn commit(mut self) -> Result<()> {
        sqlx::query("COMMIT")
            .execute(self.conn()?)
            .await
            .map_err(StoreError::classify)?;
        self.slot.in_tx = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README: SQLite keeps temporary data in memory (2 = MEMORY), on the writer and the reads.
    #[tokio::test]
    async fn temporary_data_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let writer: i64 = sqlx::query_scalar("PRAGMA temp_store")
            .fetch_one(tx.conn().unwrap())
            .await
            .unwrap();
        let reads: i64 = sqlx::query_scalar("PRAGMA temp_store")
            .fetch_one(&store.reads)
            .await
            .unwrap();
        assert_eq!((writer, reads), (2, 2));
    }

    /// A failed batch's transaction must not hold the write lock for other connections.
    #[tokio::test]
    async fn a_dropped_transaction_releases_the_write_lock_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let tx = store.begin().await.unwrap();
        drop(tx);
        let mut other = SqliteConnection::connect_with(
            &SqliteConnectOptions::from_str(&url)
                .unwrap()
                .busy_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap();
        // At once, not when the writer happens to start its next transaction.
        let mut locked = true;
        for _ in 0..20 {
            if sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut other)
                .await
                .is_ok()
            {
                locked = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(!locked, "the write lock is still held");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        // And the writer starts a fresh transaction afterwards.
        store.begin().await.unwrap().commit().await.unwrap();
    }
}
