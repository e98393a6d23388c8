//! SQLite backend: one writer connection that group-commits queued commands, a read pool,
//! and a small pool for the outbox worker's bookkeeping.
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{Command, CommandResult, SmsSealer, StoreError};
use crate::domain::PhoneState;

pub(super) mod queries {
    crate::store::sql::backend_sql!(
        sqlx::Sqlite,
        sqlx::SqliteConnection,
        sqlx::SqlitePool,
        load_state = "SELECT state FROM phones WHERE user_id = $1",
        claim = "UPDATE sms_outbox SET lease_until = $1, updated_at = $2
             WHERE id IN (SELECT id FROM sms_outbox
                          WHERE status = 'pending' AND next_attempt_at <= $2
                            AND (lease_until IS NULL OR lease_until <= $2)
                          ORDER BY next_attempt_at LIMIT $3)
             RETURNING id, user_id, code_sequence, recipient_masked, payload, attempts, created_at, resource_owner",
        write = write_separately
    );
}

/// Commands committed in one transaction at most; one fsync covers them all.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<CommandResult, StoreError>>;

pub struct SqliteStore {
    writer: mpsc::Sender<(Command, Reply)>,
    /// Read-only connections for Get and listings.
    pub(super) reads: SqlitePool,
    /// One connection for the outbox worker's claims and settlements.
    pub(super) maint: SqlitePool,
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
        let gone = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        self.writer.send((cmd, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
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
        match run_batch(c, &commands, sealer.as_ref()).await {
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
                    let _ = reply.send(Err(super::classify(&e)));
                }
            }
        }
    }
}

async fn run_batch(
    conn: &mut SqliteConnection,
    commands: &[Command],
    sealer: &dyn SmsSealer,
) -> Result<(Vec<CommandResult>, bool), sqlx::Error> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let mut states: HashMap<String, PhoneState> = HashMap::new();
    let mut results = Vec::with_capacity(commands.len());
    let mut queued_sms = false;
    for cmd in commands {
        let (result, queued) = queries::apply_command(conn, cmd, sealer, &mut states).await?;
        queued_sms |= queued;
        results.push(result);
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok((results, queued_sms))
}
