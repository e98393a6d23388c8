//! PostgreSQL backend, for several replicas on one database: a transaction per command with
//! the user's projection row locked, a retry when a concurrent writer took the sequence, and
//! outbox claims with `FOR UPDATE SKIP LOCKED`.
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use tokio::sync::Notify;

use super::{Command, CommandResult, SmsSealer, StoreError};
use crate::crypto::{Secrets, decode_key, encode_key};
use crate::domain::PhoneState;

pub(super) mod queries {
    crate::store::sql::backend_sql!(
        sqlx::Postgres,
        sqlx::PgConnection,
        sqlx::PgPool,
        load_state = "SELECT state FROM phones WHERE user_id = $1 FOR UPDATE",
        claim = "UPDATE sms_outbox SET lease_until = $1, updated_at = $2
             WHERE id IN (SELECT id FROM sms_outbox
                          WHERE status = 'pending' AND next_attempt_at <= $2
                            AND (lease_until IS NULL OR lease_until <= $2)
                          ORDER BY next_attempt_at LIMIT $3
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, user_id, code_sequence, recipient_masked, payload, attempts, created_at, resource_owner",
        write = super::write_combined
    );
}

/// A command's events, projection and outbox row in one statement (data-modifying CTEs):
/// one round trip instead of three on the write path.
async fn write_combined(
    conn: &mut sqlx::PgConnection,
    c: &super::Changes<'_>,
) -> Result<(), sqlx::Error> {
    let seqs: Vec<i64> = (0..c.events.len())
        .map(|i| (c.first_seq + i as u64) as i64)
        .collect();
    let types: Vec<&str> = c.events.iter().map(|e| e.event_type()).collect();
    let payloads: Vec<String> = c.events.iter().map(|e| e.payload().to_string()).collect();
    let sms = c.sms.as_ref();
    sqlx::query(
        "WITH ev AS (
           INSERT INTO events (aggregate_id, sequence, event_type, payload, created_at, resource_owner)
           SELECT $1, s, t, p, $3, $2 FROM UNNEST($4::BIGINT[], $5::TEXT[], $6::TEXT[]) AS x(s, t, p)
         ), ph AS (
           INSERT INTO phones (user_id, resource_owner, phone, verified, sequence, created_at, changed_at, state)
           VALUES ($1, $2, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (user_id) DO UPDATE SET resource_owner = excluded.resource_owner,
             phone = excluded.phone, verified = excluded.verified, sequence = excluded.sequence,
             changed_at = excluded.changed_at, state = excluded.state
         ), ob AS (
           INSERT INTO sms_outbox (id, user_id, resource_owner, code_sequence, recipient_masked,
                                   payload, status, attempts, next_attempt_at, created_at, updated_at)
           SELECT $13, $1, $2, $14, $15, $16, 'pending', 0, $3, $3, $3 WHERE $13::TEXT IS NOT NULL
         )
         SELECT 1",
    )
    .bind(c.user)
    .bind(c.owner)
    .bind(c.at)
    .bind(seqs)
    .bind(types)
    .bind(payloads)
    .bind(c.state.phone.as_ref().map(|p| p.as_ref().to_owned()))
    .bind(c.state.verified as i64)
    .bind(c.state.sequence as i64)
    .bind(c.state.created_at.unwrap_or_default())
    .bind(c.state.changed_at.unwrap_or_default())
    .bind(serde_json::to_string(c.state).expect("plain struct"))
    .bind(sms.map(|s| s.id.as_str()))
    .bind(sms.map(|s| s.code_sequence as i64))
    .bind(sms.map(|s| s.recipient_masked.as_str()))
    .bind(sms.map(|s| s.sealed.as_slice()))
    .execute(conn)
    .await?;
    Ok(())
}

/// A lost race on a user's sequence is re-run this many times before answering ABORTED.
const MAX_RETRIES: usize = 8;

#[derive(Debug, Clone)]
pub struct PgTuning {
    pub pool_size: u32,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

pub struct PgStore {
    pub(super) pool: PgPool,
    sealer: Arc<dyn SmsSealer>,
    outbox_wakeup: Arc<Notify>,
}

fn options(url: &str, tuning: &PgTuning) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Setup(format!("bad PostgreSQL URL: {e}")))?
        .options([(
            "statement_timeout",
            format!("{}ms", tuning.statement_timeout.as_millis()),
        )]))
}

/// Connects and migrates, retrying with backoff while the database is down. Migrations take
/// a PostgreSQL advisory lock, so replicas starting together apply them once.
async fn connect_and_migrate(url: &str, tuning: &PgTuning) -> Result<PgPool, StoreError> {
    let opts = options(url, tuning)?;
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
            Ok(Ok(pool)) => return Ok(pool),
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

/// The secrets every replica shares: the first replica stores its fresh ones, all read them.
pub async fn shared_secrets(
    url: &str,
    tuning: &PgTuning,
    fresh: &Secrets,
) -> Result<Secrets, StoreError> {
    let pool = connect_and_migrate(url, tuning).await?;
    sqlx::query(
        "INSERT INTO server_secrets (id, signing_key, code_key, outbox_key) VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(encode_key(&fresh.signing_seed))
    .bind(encode_key(&fresh.code_key))
    .bind(encode_key(&fresh.outbox_key))
    .execute(&pool)
    .await
    .map_err(StoreError::Unavailable)?;
    let row =
        sqlx::query("SELECT signing_key, code_key, outbox_key FROM server_secrets WHERE id = 1")
            .fetch_one(&pool)
            .await
            .map_err(StoreError::Unavailable)?;
    pool.close().await;
    let key = |i: usize| {
        decode_key(row.get::<&str, _>(i))
            .ok_or_else(|| StoreError::Corrupt("server_secrets".into()))
    };
    Ok(Secrets {
        signing_seed: key(0)?,
        code_key: key(1)?,
        outbox_key: key(2)?,
    })
}

impl PgStore {
    pub async fn connect(
        url: &str,
        tuning: &PgTuning,
        sealer: Arc<dyn SmsSealer>,
        outbox_wakeup: Arc<Notify>,
    ) -> Result<PgStore, StoreError> {
        let pool = connect_and_migrate(url, tuning).await?;
        Ok(PgStore {
            pool,
            sealer,
            outbox_wakeup,
        })
    }

    pub async fn execute(&self, cmd: Command) -> Result<CommandResult, StoreError> {
        for attempt in 1..=MAX_RETRIES {
            match self.try_execute(&cmd).await {
                Err(e) if matches!(super::classify(&e), StoreError::Conflict) => {
                    tracing::debug!(
                        attempt,
                        "lost a race on the user's sequence; re-running the command"
                    );
                }
                Err(e) => return Err(super::classify(&e)),
                Ok((result, queued)) => {
                    if queued {
                        self.outbox_wakeup.notify_waiters();
                    }
                    return Ok(result);
                }
            }
        }
        Err(StoreError::Conflict)
    }

    async fn try_execute(&self, cmd: &Command) -> Result<(CommandResult, bool), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut states = HashMap::<String, PhoneState>::new();
        let out = queries::apply_command(&mut tx, cmd, self.sealer.as_ref(), &mut states).await?;
        tx.commit().await?;
        Ok(out)
    }
}
