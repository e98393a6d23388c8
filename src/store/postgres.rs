//! PostgreSQL, for several replicas on one database: a batch reads without locks and writes
//! in one statement that fails (and is re-run) when another writer changed what it read,
//! and outbox claims with `FOR UPDATE SKIP LOCKED` so replicas never claim the same message.
use std::str::FromStr;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::queries::{
    self, ClaimRow, CounterRow, EventRow, LoadRow, Loaded, OutboxListRow, QueueStatsRow, SecretsRow,
};
use super::{BatchWrites, CounterAdd, NewEvent, OutboxSettle, Result, StoreError, StoredSecrets};
use crate::clock::Millis;
use crate::domain::CounterId;

/// The batch's read, in one statement, without locks: the users' states and the counts of
/// the counters it may add to. The write (`WRITE_BATCH`) checks that nothing read changed.
const LOAD: &str = "SELECT user_id, state, NULL::TEXT AS counter_key, NULL::BIGINT AS window_start,
            NULL::BIGINT AS count
     FROM phones WHERE user_id = ANY($1)
     UNION ALL
     SELECT NULL, NULL, counter_key, window_start, count FROM send_counters
     WHERE (counter_key, window_start) IN (SELECT * FROM UNNEST($2::TEXT[], $3::BIGINT[]))";

/// "Still pending" is written as "not in a final state" (the same rows) so that the only
/// index the condition can use is the id's: `status = 'pending'` matches the due index's
/// first column, and with stale statistics the planner walked every pending message there.
const STILL_PENDING: &str = "SELECT id FROM sms_outbox
     WHERE id = ANY($1) AND status NOT IN ('delivered', 'dropped', 'parked')";

const CLAIM: &str = "UPDATE sms_outbox SET lease_until = $1, updated_at = $2
     WHERE id IN (SELECT id FROM sms_outbox
                  WHERE status = 'pending' AND next_attempt_at <= $2
                    AND (lease_until IS NULL OR lease_until <= $2)
                  ORDER BY next_attempt_at LIMIT $3
                  FOR UPDATE SKIP LOCKED)
     RETURNING id, user_id, resource_owner, code_sequence, recipient_masked, payload, attempts, created_at,
               (SELECT state FROM phones WHERE phones.user_id = sms_outbox.user_id) AS state";

/// A batch's writes in one statement (data-modifying CTEs over arrays), committed on its
/// own: one round trip however many commands the batch holds, and no lock held between the
/// read and the write. What the batch decided on must still hold when it writes:
/// - a user's events take the next sequences, so another writer's event in between fails
///   on the events' key;
/// - a counter is added to only while the sum stays within its limit (other writers' sends
///   since the read are fine up to it), and a new one is inserted, failing on its key if
///   another writer made it meanwhile;
/// - a delivered message is marked only if it is still pending.
///
/// `md` and `sc` return the rows they changed; when a row was missed,
/// `phoneproof_unchanged` fails the statement with a serialization failure and the writer
/// re-runs the batch from its read. Rows go in key order in every table, so two batches
/// wait for each other rather than deadlock.
const WRITE_BATCH: &str = "WITH ev AS (
       INSERT INTO events (aggregate_id, sequence, event_type, payload, created_at, resource_owner)
       SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[])
     ), ph AS (
       INSERT INTO phones (user_id, state)
       SELECT * FROM UNNEST($7::TEXT[], $8::TEXT[])
       ON CONFLICT (user_id) DO UPDATE SET state = excluded.state
     ), ob AS (
       INSERT INTO sms_outbox (id, user_id, resource_owner, code_sequence, recipient_masked,
                               payload, status, attempts, next_attempt_at, created_at, updated_at)
       SELECT i, u, o, c, r, p, 'pending', 0, a, a, a
       FROM UNNEST($9::TEXT[], $10::TEXT[], $11::TEXT[], $12::BIGINT[], $13::TEXT[], $14::BYTEA[], $15::BIGINT[])
         AS x(i, u, o, c, r, p, a)
     ), md AS (
       UPDATE sms_outbox SET status = 'delivered', payload = NULL, lease_until = NULL,
              attempts = attempts + 1, last_error = NULL, updated_at = $22
       WHERE id = ANY($21) AND status NOT IN ('delivered', 'dropped', 'parked')
       RETURNING 1
     ), sc AS (
       UPDATE send_counters s SET count = s.count + x.n
       FROM UNNEST($16::TEXT[], $17::BIGINT[], $19::BIGINT[], $20::BIGINT[], $24::BOOL[])
         AS x(k, w, n, mx, found)
       WHERE x.found AND s.counter_key = x.k AND s.window_start = x.w
         AND s.count + x.n <= x.mx
       RETURNING 1
     ), sn AS (
       INSERT INTO send_counters (counter_key, window_start, expires_at, count)
       SELECT k, w, e, n
       FROM UNNEST($16::TEXT[], $17::BIGINT[], $18::BIGINT[], $19::BIGINT[], $24::BOOL[])
         AS x(k, w, e, n, found)
       WHERE NOT x.found
     )
     SELECT phoneproof_unchanged((SELECT count(*) FROM md) = cardinality($21::TEXT[])
                                 AND (SELECT count(*) FROM sc) = $23)";

/// Still pending, written as for `STILL_PENDING`.
const DROP_MANY: &str =
    "UPDATE sms_outbox SET status = 'dropped', payload = NULL, lease_until = NULL,
            last_error = $2, updated_at = $3
     WHERE id = ANY($1) AND status NOT IN ('delivered', 'dropped', 'parked')";

const INSERT_SECRETS: &str =
    "INSERT INTO server_secrets (id, signing_key, code_key, outbox_key) VALUES (1, $1, $2, $3)
     ON CONFLICT (id) DO NOTHING";

const SELECT_SECRETS: &str =
    "SELECT signing_key, code_key, outbox_key FROM server_secrets WHERE id = 1";

#[derive(Debug, Clone)]
pub struct PgTuning {
    pub pool_size: u32,
    /// Write transactions (group-commit batches) in flight at once, each on a pooled
    /// connection. Fewer, larger batches cost the database less per command than many small
    /// ones; more only help when commits wait on the network rather than the database's CPU.
    pub writers: usize,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

/// The documented defaults (`database_pool_size` and the two timeouts in README.md).
impl Default for PgTuning {
    fn default() -> Self {
        Self {
            pool_size: 16,
            writers: 2,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_millis(5000),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    writers: usize,
}

impl PgStore {
    /// Connects and migrates, retrying with backoff while the database is down. Migrations
    /// take a PostgreSQL advisory lock, so replicas starting together apply them once.
    pub async fn connect(url: &str, tuning: &PgTuning) -> Result<PgStore> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Setup(format!("bad PostgreSQL URL: {e}")))?
            .options([
                (
                    "statement_timeout",
                    format!("{}ms", tuning.statement_timeout.as_millis()),
                ),
                // Every statement here reaches its rows through a key or walks the outbox's
                // due index in order. The outbox and the counters grow from empty faster than
                // statistics follow, and with stale estimates the planner chose bitmap and
                // sequential scans that read every pending message or counter for each claim,
                // drop, delivery or count (milliseconds each once the tables fill). Without
                // them it takes the key or the ordered scan: the plans stay what they are
                // meant to be, whatever the tables' size.
                ("enable_bitmapscan", "off".to_owned()),
                ("enable_seqscan", "off".to_owned()),
            ]);
        let mut wait = Duration::from_millis(250);
        loop {
            let attempt = async {
                let pool = PgPoolOptions::new()
                    .max_connections(tuning.pool_size)
                    .acquire_timeout(tuning.connect_timeout)
                    .connect_with(opts.clone())
                    .await?;
                sqlx::migrate!("src/store/migrations/postgres")
                    .run(&pool)
                    .await
                    .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
                Ok::<_, sqlx::Error>(pool)
            };
            match tokio::time::timeout(tuning.connect_timeout * 4, attempt).await {
                Ok(Ok(pool)) => {
                    return Ok(PgStore {
                        pool,
                        writers: tuning.writers,
                    });
                }
                Ok(Err(sqlx::Error::Migrate(e))) => {
                    return Err(StoreError::Setup(format!("migrations failed: {e}")));
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "PostgreSQL not reachable yet")
                }
                Err(_) => tracing::warn!(
                    retry_in_ms = wait.as_millis() as u64,
                    "PostgreSQL connection timed out"
                ),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    pub(super) fn writers(&self) -> usize {
        self.writers
    }

    pub(super) async fn load_state(&self, user: &str) -> Result<Option<String>> {
        sqlx::query_scalar(queries::LOAD_STATE)
            .bind(user)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn events(&self, user: &str) -> Result<Vec<EventRow>> {
        sqlx::query_as(queries::EVENTS)
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimRow>> {
        // A prepared statement: with bitmap and sequential scans off (see `connect`) its
        // cached plan is the ordered walk of the due index that stops after `limit` rows,
        // however small the outbox was when it was planned.
        sqlx::query_as(CLAIM)
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
        q.execute(&self.pool).await.map_err(StoreError::classify)?;
        Ok(())
    }

    pub(super) async fn drop_many(&self, ids: &[&str], reason: &str, now: Millis) -> Result<()> {
        sqlx::query(DROP_MANY)
            .bind(ids)
            .bind(reason)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        Ok(())
    }

    pub(super) async fn outbox(&self) -> Result<Vec<OutboxListRow>> {
        sqlx::query_as(queries::OUTBOX)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn queue_stats(&self, now: Millis) -> Result<QueueStatsRow> {
        sqlx::query_as(queries::QUEUE_STATS)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    pub(super) async fn ping(&self) -> Result<()> {
        sqlx::query(queries::PING)
            .execute(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        Ok(())
    }

    /// The first replica's secrets win; every replica reads the same ones back.
    pub(super) async fn shared_secrets(&self, fresh: &StoredSecrets) -> Result<StoredSecrets> {
        sqlx::query(INSERT_SECRETS)
            .bind(&fresh.signing_key)
            .bind(&fresh.code_key)
            .bind(&fresh.outbox_key)
            .execute(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        let row: SecretsRow = sqlx::query_as(SELECT_SECRETS)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        Ok(StoredSecrets {
            signing_key: row.signing_key,
            code_key: row.code_key,
            outbox_key: row.outbox_key,
        })
    }
}

/// A group-commit batch on one pooled connection: reads outside any transaction, then one
/// statement that writes, checks and commits (`WRITE_BATCH`). Four round trips became two:
/// no `BEGIN`, no `COMMIT`, and no row lock (a WAL record of its own) taken by the read.
pub struct PgBatch {
    conn: PoolConnection<Postgres>,
    /// Messages found still pending, marked delivered by the write if they still are.
    delivered: Vec<String>,
    delivered_at: Millis,
}

impl PgStore {
    /// Reads the states of `users` and the counts of `counters`, in one statement.
    pub(super) async fn begin_batch(
        &self,
        users: &[&str],
        counters: &[(CounterId, Millis)],
    ) -> Result<(PgBatch, Loaded)> {
        let mut batch = PgBatch {
            conn: self.pool.acquire().await.map_err(StoreError::classify)?,
            delivered: Vec::new(),
            delivered_at: 0,
        };
        let loaded = batch.load(users, counters).await?;
        Ok((batch, loaded))
    }

    /// Whether a write transaction can start and commit (readiness).
    pub(super) async fn empty_transaction(&self) -> Result<()> {
        let tx = self.pool.begin().await.map_err(StoreError::classify)?;
        tx.commit().await.map_err(StoreError::classify)
    }
}

/// Each counter once, as the two arrays the statements unpack.
fn counter_columns(ids: &[(CounterId, Millis)]) -> (Vec<&str>, Vec<Millis>) {
    let mut ids: Vec<&CounterId> = ids.iter().map(|(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.iter()
        .map(|id| (id.key.as_str(), id.window_start))
        .unzip()
}

impl PgBatch {
    /// Of the messages `ids`, those still pending; the write marks them delivered.
    pub(super) async fn still_pending(&mut self, ids: &[&str], now: Millis) -> Result<Vec<String>> {
        let pending: Vec<String> = sqlx::query_scalar(STILL_PENDING)
            .bind(ids)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(StoreError::classify)?;
        self.delivered.extend(pending.iter().cloned());
        self.delivered_at = now;
        Ok(pending)
    }

    async fn load(&mut self, users: &[&str], counters: &[(CounterId, Millis)]) -> Result<Loaded> {
        let (keys, windows) = counter_columns(counters);
        let rows: Vec<LoadRow> = sqlx::query_as(LOAD)
            .bind(users)
            .bind(keys)
            .bind(windows)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(StoreError::classify)?;
        Ok(LoadRow::split(rows))
    }

    /// The counts of more counters: the batch's read again, for no user.
    pub(super) async fn counts(&mut self, ids: &[(CounterId, Millis)]) -> Result<Vec<CounterRow>> {
        Ok(self.load(&[], ids).await?.1)
    }

    /// Committed on its own: deleting ended windows is right whatever the batch does.
    pub(super) async fn prune_counters(&mut self, now: Millis) -> Result<()> {
        sqlx::query(queries::PRUNE_COUNTERS)
            .bind(now)
            .execute(&mut *self.conn)
            .await
            .map_err(StoreError::classify)?;
        Ok(())
    }

    /// Writes and commits, or fails as a conflict when something the batch read changed.
    pub(super) async fn write(mut self, w: &BatchWrites<'_>) -> Result<()> {
        if w.is_empty() && self.delivered.is_empty() {
            return Ok(());
        }
        let mut ev: Vec<&NewEvent> = w.events.iter().collect();
        ev.sort_unstable_by(|a, b| (a.user, a.sequence).cmp(&(b.user, b.sequence)));
        let mut ph: Vec<&(&str, String)> = w.phones.iter().collect();
        ph.sort_unstable_by_key(|(user, _)| *user);
        let mut sc: Vec<&CounterAdd> = w.counters.iter().collect();
        sc.sort_unstable_by_key(|c| c.id);
        self.delivered.sort_unstable();
        let ob = &w.outbox;
        let updated = sc.iter().filter(|c| c.exists).count() as i64;
        sqlx::query(WRITE_BATCH)
            .bind(ev.iter().map(|e| e.user).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.event_type).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.at).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.owner).collect::<Vec<_>>())
            .bind(ph.iter().map(|(u, _)| *u).collect::<Vec<_>>())
            .bind(ph.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>())
            .bind(ob.iter().map(|m| m.id.as_str()).collect::<Vec<_>>())
            .bind(ob.iter().map(|m| m.user).collect::<Vec<_>>())
            .bind(ob.iter().map(|m| m.owner).collect::<Vec<_>>())
            .bind(
                ob.iter()
                    .map(|m| m.code_sequence as i64)
                    .collect::<Vec<_>>(),
            )
            .bind(
                ob.iter()
                    .map(|m| m.recipient_masked.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(ob.iter().map(|m| m.sealed.as_slice()).collect::<Vec<_>>())
            .bind(ob.iter().map(|m| m.at).collect::<Vec<_>>())
            .bind(sc.iter().map(|c| c.id.key.as_str()).collect::<Vec<_>>())
            .bind(sc.iter().map(|c| c.id.window_start).collect::<Vec<_>>())
            .bind(sc.iter().map(|c| c.expires_at).collect::<Vec<_>>())
            .bind(sc.iter().map(|c| c.count as i64).collect::<Vec<_>>())
            .bind(
                sc.iter()
                    .map(|c| i64::try_from(c.max).unwrap_or(i64::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(&self.delivered)
            .bind(self.delivered_at)
            .bind(updated)
            .bind(sc.iter().map(|c| c.exists).collect::<Vec<_>>())
            .execute(&mut *self.conn)
            .await
            .map_err(StoreError::classify)?;
        Ok(())
    }
}
