//! SQLite backend: one writer connection that group-commits queued commands, a read pool,
//! and a small pool for the outbox worker's bookkeeping.
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{
    ClaimedSms, Command, CommandResult, OutboxRow, OutboxSettle, QueueStats, SmsSealer, StoreError,
    StoredEvent,
};
use crate::clock::Millis;
use crate::domain::{Event, PhoneState, os_random};

/// Commands committed in one transaction at most; one fsync covers them all.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<CommandResult, StoreError>>;

pub struct SqliteStore {
    writer: mpsc::Sender<(Command, Reply)>,
    reads: SqlitePool,
    maint: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e)
}

pub(crate) fn new_message_id() -> String {
    let mut b = [0u8; 16];
    os_random(&mut b);
    hex::encode(b)
}

impl SqliteStore {
    pub async fn connect(
        url: &str,
        sealer: Arc<dyn SmsSealer>,
        outbox_wakeup: Arc<Notify>,
    ) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Setup(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a power loss may drop the last commits, never corrupt the file.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let maint = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Setup(format!("cannot open {url}: {e}")))?;
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&maint)
            .await
            .map_err(|e| StoreError::Setup(format!("migrations failed: {e}")))?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await
            .map_err(|e| StoreError::Setup(format!("cannot open {url}: {e}")))?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer_loop(options, rx, sealer, outbox_wakeup));
        Ok(SqliteStore {
            writer: tx,
            reads,
            maint,
        })
    }

    pub async fn execute(&self, cmd: Command) -> Result<CommandResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send((cmd, reply))
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?
    }

    pub async fn phone(&self, user: &str) -> Result<Option<PhoneState>, StoreError> {
        let row = sqlx::query("SELECT state FROM phones WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&self.reads)
            .await
            .map_err(unavailable)?;
        row.map(|r| decode_state(r.get::<&str, _>(0))).transpose()
    }

    pub async fn events(&self, user: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, payload, created_at, resource_owner
             FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(user)
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let event_type: String = r.get(1);
                let payload: String = r.get(2);
                StoredEvent {
                    sequence: r.get::<i64, _>(0) as u64,
                    event: Event::from_stored(&event_type, &payload),
                    event_type,
                    payload,
                    created_at: r.get(3),
                    resource_owner: r.get(4),
                }
            })
            .collect())
    }

    pub async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimedSms>, StoreError> {
        let rows = sqlx::query(
            "UPDATE sms_outbox SET lease_until = $1, updated_at = $2
             WHERE id IN (SELECT id FROM sms_outbox
                          WHERE status = 'pending' AND next_attempt_at <= $2
                            AND (lease_until IS NULL OR lease_until <= $2)
                          ORDER BY next_attempt_at LIMIT $3)
             RETURNING id, user_id, code_sequence, recipient_masked, payload, attempts, created_at, resource_owner",
        )
        .bind(lease_until)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.maint)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|r| ClaimedSms {
                id: r.get(0),
                user_id: r.get(1),
                code_sequence: r.get::<i64, _>(2) as u64,
                recipient_masked: r.get(3),
                payload: r.get::<Option<Vec<u8>>, _>(4).unwrap_or_default(),
                attempts: r.get::<i64, _>(5) as u32,
                created_at: r.get(6),
                resource_owner: r.get(7),
            })
            .collect())
    }

    pub async fn settle(&self, id: &str, how: OutboxSettle, now: Millis) -> Result<(), StoreError> {
        let q = match &how {
            OutboxSettle::Retry {
                next_attempt_at,
                error,
            } => sqlx::query(
                "UPDATE sms_outbox SET attempts = attempts + 1, next_attempt_at = $2,
                        lease_until = NULL, last_error = $3, updated_at = $4
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(*next_attempt_at)
            .bind(error.as_str())
            .bind(now),
            OutboxSettle::Park { error } => sqlx::query(
                "UPDATE sms_outbox SET status = 'parked', attempts = attempts + 1, payload = NULL,
                        lease_until = NULL, last_error = $2, updated_at = $3
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(error.as_str())
            .bind(now),
            OutboxSettle::Drop { reason } => sqlx::query(
                "UPDATE sms_outbox SET status = 'dropped', payload = NULL, lease_until = NULL,
                        last_error = $2, updated_at = $3
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(reason.as_str())
            .bind(now),
        };
        q.execute(&self.maint).await.map_err(unavailable)?;
        Ok(())
    }

    pub async fn release(&self, ids: &[String]) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query(
                "UPDATE sms_outbox SET lease_until = NULL WHERE id = $1 AND status = 'pending'",
            )
            .bind(id.as_str())
            .execute(&self.maint)
            .await
            .map_err(unavailable)?;
        }
        Ok(())
    }

    pub async fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, recipient_masked, status, attempts, next_attempt_at, last_error,
                    payload IS NOT NULL
             FROM sms_outbox ORDER BY created_at, code_sequence, id",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxRow {
                id: r.get(0),
                user_id: r.get(1),
                recipient_masked: r.get(2),
                status: r.get(3),
                attempts: r.get::<i64, _>(4) as u32,
                next_attempt_at: r.get(5),
                last_error: r.get(6),
                has_payload: r.get::<i64, _>(7) != 0,
            })
            .collect())
    }

    pub async fn queue_stats(&self, now: Millis) -> Result<QueueStats, StoreError> {
        let r = sqlx::query(
            "SELECT
               COALESCE(SUM(CASE WHEN status = 'pending' AND next_attempt_at <= $1 THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN status = 'parked' THEN 1 ELSE 0 END), 0),
               MIN(CASE WHEN status = 'pending' AND next_attempt_at <= $1 THEN created_at END)
             FROM sms_outbox",
        )
        .bind(now)
        .fetch_one(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(QueueStats {
            due: r.get::<i64, _>(0) as u64,
            pending: r.get::<i64, _>(1) as u64,
            parked: r.get::<i64, _>(2) as u64,
            oldest_due_age_ms: r
                .get::<Option<i64>, _>(3)
                .map(|t| (now - t).max(0))
                .unwrap_or(0),
        })
    }

    pub async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM sms_outbox WHERE status = 'pending'")
            .fetch_one(&self.reads)
            .await
            .map_err(unavailable)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reads)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn decode_state(json: &str) -> Result<PhoneState, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("phone state: {e}")))
}

/// Owns the one writer connection. Takes every command already queued (up to `MAX_BATCH`),
/// runs them in one `BEGIN IMMEDIATE` transaction and answers each after the commit.
async fn writer_loop(
    options: SqliteConnectOptions,
    mut rx: mpsc::Receiver<(Command, Reply)>,
    sealer: Arc<dyn SmsSealer>,
    outbox_wakeup: Arc<Notify>,
) {
    let mut conn: Option<SqliteConnection> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if conn.is_none() {
            match SqliteConnection::connect_with(&options).await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::error!(error = %e, "SQLite writer cannot connect"),
            }
        }
        let Some(c) = conn.as_mut() else {
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(StoreError::Unavailable(sqlx::Error::PoolClosed)));
            }
            continue;
        };
        let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.drain(..).unzip();
        match run_batch(c, commands, sealer.as_ref()).await {
            Ok((results, queued_sms)) => {
                if queued_sms {
                    outbox_wakeup.notify_waiters();
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "SQLite write batch failed; nothing of it was committed");
                let _ = sqlx::query("ROLLBACK").execute(&mut *c).await;
                // A fresh connection next time, in case this one is broken.
                conn = None;
                for reply in replies {
                    let _ = reply.send(Err(match &e {
                        sqlx::Error::Database(db) if db.is_unique_violation() => {
                            StoreError::Conflict
                        }
                        other => StoreError::Unavailable(clone_error(other)),
                    }));
                }
            }
        }
    }
}

fn clone_error(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}

async fn run_batch(
    conn: &mut SqliteConnection,
    commands: Vec<Command>,
    sealer: &dyn SmsSealer,
) -> Result<(Vec<CommandResult>, bool), sqlx::Error> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    // Several commands for one user in one batch see each other's effects.
    let mut states: HashMap<String, PhoneState> = HashMap::new();
    let mut results = Vec::with_capacity(commands.len());
    let mut queued_sms = false;
    for cmd in commands {
        let user = cmd.user.as_ref().to_owned();
        let state = match states.remove(&user) {
            Some(s) => s,
            None => load_state(conn, &user).await?,
        };
        if let Some(id) = &cmd.delivered_message {
            let done = mark_delivered(conn, id, cmd.now).await?;
            if !done {
                states.insert(user, state.clone());
                results.push(CommandResult {
                    outcome: Ok(()),
                    state,
                    wrote_events: false,
                });
                continue;
            }
        }
        let decision = (cmd.decide)(&state);
        let mut next = state;
        for event in &decision.events {
            let seq = next.sequence + 1;
            append_event(conn, &user, seq, event, cmd.now, cmd.owner.as_ref()).await?;
            next = next.apply(event, seq, cmd.now);
        }
        let wrote_events = !decision.events.is_empty();
        if wrote_events {
            upsert_phone(conn, &user, cmd.owner.as_ref(), &next).await?;
        }
        if let (Some(sms), Some(code)) = (&decision.sms, &next.code) {
            let sealed = sealer.seal(sms, "user.human.phone.code.added");
            let row = NewSms {
                user: &user,
                owner: cmd.owner.as_ref(),
                code_sequence: code.sequence,
                recipient_masked: &sms.to.masked(),
                sealed: &sealed,
            };
            enqueue_sms(conn, &row, cmd.now).await?;
            queued_sms = true;
        }
        results.push(CommandResult {
            outcome: decision.outcome,
            state: next.clone(),
            wrote_events,
        });
        states.insert(user, next);
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok((results, queued_sms))
}

async fn load_state(conn: &mut SqliteConnection, user: &str) -> Result<PhoneState, sqlx::Error> {
    let row = sqlx::query("SELECT state FROM phones WHERE user_id = $1")
        .bind(user)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => Ok(PhoneState::default()),
        Some(r) => decode_state(r.get::<&str, _>(0))
            .map_err(|e| sqlx::Error::Decode(Box::new(std::io::Error::other(e.to_string())))),
    }
}

async fn append_event(
    conn: &mut SqliteConnection,
    user: &str,
    seq: u64,
    event: &Event,
    at: Millis,
    owner: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (aggregate_id, sequence, event_type, payload, created_at, resource_owner)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user)
    .bind(seq as i64)
    .bind(event.event_type())
    .bind(event.payload().to_string())
    .bind(at)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_phone(
    conn: &mut SqliteConnection,
    user: &str,
    owner: &str,
    state: &PhoneState,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO phones (user_id, resource_owner, phone, verified, sequence, created_at, changed_at, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (user_id) DO UPDATE SET resource_owner = excluded.resource_owner,
           phone = excluded.phone, verified = excluded.verified, sequence = excluded.sequence,
           changed_at = excluded.changed_at, state = excluded.state",
    )
    .bind(user)
    .bind(owner)
    .bind(state.phone.as_ref().map(|p| p.as_ref().to_owned()))
    .bind(state.verified as i64)
    .bind(state.sequence as i64)
    .bind(state.created_at.unwrap_or_default())
    .bind(state.changed_at.unwrap_or_default())
    .bind(serde_json::to_string(state).expect("plain struct"))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

struct NewSms<'a> {
    user: &'a str,
    owner: &'a str,
    code_sequence: u64,
    recipient_masked: &'a str,
    sealed: &'a [u8],
}

async fn enqueue_sms(
    conn: &mut SqliteConnection,
    sms: &NewSms<'_>,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sms_outbox (id, user_id, resource_owner, code_sequence, recipient_masked,
                                 payload, status, attempts, next_attempt_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)",
    )
    .bind(new_message_id())
    .bind(sms.user)
    .bind(sms.owner)
    .bind(sms.code_sequence as i64)
    .bind(sms.recipient_masked)
    .bind(sms.sealed)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// True when the message was still pending and is now delivered (text wiped).
async fn mark_delivered(
    conn: &mut SqliteConnection,
    id: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sms_outbox SET status = 'delivered', payload = NULL, lease_until = NULL,
                attempts = attempts + 1, last_error = NULL, updated_at = $2
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
