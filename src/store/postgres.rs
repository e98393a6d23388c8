//! PostgreSQL, for several replicas on one database: the user's projection row locked for
//! the length of a write, a command's writes in one statement, and outbox claims with
//! `FOR UPDATE SKIP LOCKED` so replicas never claim the same message.
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};

use super::queries::{
    self, ClaimRow, CounterRow, EventRow, LoadRow, Loaded, OutboxListRow, QueueStatsRow, SecretsRow,
};
use super::{BatchWrites, OutboxSettle, Result, StoreError, StoredSecrets};
use crate::clock::Millis;
use crate::domain::CounterId;

/// Locks the batch's rows in one statement, in user order: two batches locking overlapping
/// users always lock them in the same order, so they cannot deadlock.
/// With them, the batch's send counters that exist are locked, in key order, as
/// `LOCK_COUNTS` does: one round trip for both.
const LOAD_FOR_UPDATE: &str = "WITH p AS (
       SELECT user_id, state FROM phones WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE
     ), c AS (
       SELECT counter_key, window_start, count FROM send_counters
       WHERE (counter_key, window_start) IN (SELECT * FROM UNNEST($2::TEXT[], $3::BIGINT[]))
       ORDER BY counter_key, window_start FOR UPDATE
     )
     SELECT user_id, state, NULL::TEXT AS counter_key, NULL::BIGINT AS window_start,
            NULL::BIGINT AS count FROM p
     UNION ALL
     SELECT NULL, NULL, counter_key, window_start, count FROM c";

/// "Still pending" is written as "not in a final state" (the same rows) so that the only
/// index the condition can use is the id's: `status = 'pending'` matches the due index's
/// first column, and with stale statistics the planner walked every pending message there.
const MARK_DELIVERED: &str =
    "UPDATE sms_outbox SET status = 'delivered', payload = NULL, lease_until = NULL,
            attempts = attempts + 1, last_error = NULL, updated_at = $2
     WHERE id = ANY($1) AND status NOT IN ('delivered', 'dropped', 'parked')
     RETURNING id";

const CLAIM: &str = "UPDATE sms_outbox SET lease_until = $1, updated_at = $2
     WHERE id IN (SELECT id FROM sms_outbox
                  WHERE status = 'pending' AND next_attempt_at <= $2
                    AND (lease_until IS NULL OR lease_until <= $2)
                  ORDER BY next_attempt_at LIMIT $3
                  FOR UPDATE SKIP LOCKED)
     RETURNING id, user_id, resource_owner, code_sequence, recipient_masked, payload, attempts, created_at,
               (SELECT state FROM phones WHERE phones.user_id = sms_outbox.user_id) AS state";

/// A batch's events, projection rows and outbox rows in one statement (data-modifying CTEs
/// over arrays): one round trip however many commands the batch holds.
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
     ), sc AS (
       UPDATE send_counters s SET count = s.count + x.n
       FROM UNNEST($16::TEXT[], $17::BIGINT[], $19::BIGINT[], $20::BOOL[]) AS x(k, w, n, new)
       WHERE NOT x.new AND s.counter_key = x.k AND s.window_start = x.w
     ), sn AS (
       INSERT INTO send_counters (counter_key, window_start, expires_at, count)
       SELECT k, w, e, n
       FROM UNNEST($16::TEXT[], $17::BIGINT[], $18::BIGINT[], $19::BIGINT[], $20::BOOL[])
         AS x(k, w, e, n, new)
       WHERE x.new
     )
     SELECT 1";

/// Locks the batch's counters that exist until commit, in key order (so two batches cannot
/// deadlock on them), returning their counts: a replica counting the same number or region
/// waits for this batch to commit, then sees its sends. A counter that does not exist yet
/// is created by the batch's write with a plain INSERT: when another batch created it in
/// the meantime, that INSERT fails on the key and the whole batch is re-run, now locking
/// the row. Locking takes no new row version, as an upsert would.
const LOCK_COUNTS: &str = "SELECT counter_key, window_start, count FROM send_counters
     WHERE (counter_key, window_start) IN (SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[]))
     ORDER BY counter_key, window_start FOR UPDATE";

/// Still pending, written as for `MARK_DELIVERED`.
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

    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(StoreError::classify)
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

/// The batch's first read: the users' states and the counters' counts, all locked.
pub(super) async fn load_for_update(
    conn: &mut PgConnection,
    users: &[&str],
    counters: &[(CounterId, Millis)],
) -> Result<Loaded> {
    let counters = sorted_counters(counters);
    let rows: Vec<LoadRow> = sqlx::query_as(LOAD_FOR_UPDATE)
        .bind(users)
        .bind(
            counters
                .iter()
                .map(|(id, _)| id.key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            counters
                .iter()
                .map(|(id, _)| id.window_start)
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await
        .map_err(StoreError::classify)?;
    Ok(LoadRow::split(rows))
}

/// Each counter once, in key order: the order every batch locks them in.
fn sorted_counters(ids: &[(CounterId, Millis)]) -> Vec<&(CounterId, Millis)> {
    let mut ids: Vec<&(CounterId, Millis)> = ids.iter().collect();
    ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    ids.dedup_by(|a, b| a.0 == b.0);
    ids
}

pub(super) async fn mark_delivered(
    conn: &mut PgConnection,
    ids: &[&str],
    now: Millis,
) -> Result<Vec<String>> {
    sqlx::query_scalar(MARK_DELIVERED)
        .bind(ids)
        .bind(now)
        .fetch_all(conn)
        .await
        .map_err(StoreError::classify)
}

pub(super) async fn lock_counts(
    conn: &mut PgConnection,
    ids: &[(CounterId, Millis)],
) -> Result<Vec<CounterRow>> {
    let ids = sorted_counters(ids);
    sqlx::query_as(LOCK_COUNTS)
        .bind(
            ids.iter()
                .map(|(id, _)| id.key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            ids.iter()
                .map(|(id, _)| id.window_start)
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await
        .map_err(StoreError::classify)
}

pub(super) async fn prune_counters(conn: &mut PgConnection, now: Millis) -> Result<()> {
    sqlx::query(queries::PRUNE_COUNTERS)
        .bind(now)
        .execute(conn)
        .await
        .map_err(StoreError::classify)?;
    Ok(())
}

pub(super) async fn write(conn: &mut PgConnection, w: &BatchWrites<'_>) -> Result<()> {
    let ev = &w.events;
    let ob = &w.outbox;
    let sc = &w.counters;
    sqlx::query(WRITE_BATCH)
        .bind(ev.iter().map(|e| e.user).collect::<Vec<_>>())
        .bind(ev.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
        .bind(ev.iter().map(|e| e.event_type).collect::<Vec<_>>())
        .bind(ev.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
        .bind(ev.iter().map(|e| e.at).collect::<Vec<_>>())
        .bind(ev.iter().map(|e| e.owner).collect::<Vec<_>>())
        .bind(w.phones.iter().map(|(u, _)| *u).collect::<Vec<_>>())
        .bind(w.phones.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>())
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
        .bind(sc.iter().map(|c| c.new).collect::<Vec<_>>())
        .execute(conn)
        .await
        .map_err(StoreError::classify)?;
    Ok(())
}
