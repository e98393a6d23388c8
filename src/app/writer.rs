//! The write path: a batch of commands in one transaction. On SQLite one task group-commits
//! whatever is queued (one fsync for many requests); on PostgreSQL each request runs its own
//! transaction, re-run when another replica took the same sequence. Either way a failing
//! command fails only itself.
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{Notify, mpsc, oneshot};

use super::AppError;
use crate::clock::Millis;
use crate::domain::{
    Command, DomainError, PhoneState, Policies, ResourceOwner, UserId, decide, os_random,
};
use crate::sealed_sms::SmsSealer;
use crate::store::{Changes, NewOutboxRow, Store, StoreError};

/// Commands committed in one transaction at most; one fsync covers them all.
const MAX_BATCH: usize = 256;
/// A command that lost a race on its sequence to another replica is re-run this often.
const MAX_RETRIES: usize = 8;

/// One command on one user's phone, with everything needed to decide it.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub user: UserId,
    pub owner: ResourceOwner,
    pub now: Millis,
    pub command: Command,
    /// Marks this outbox message delivered in the same transaction; when it is no longer
    /// pending, the command writes nothing.
    pub delivered_message: Option<String>,
}

/// What a command did: its answer, the state after it, and whether it wrote events.
#[derive(Debug, Clone)]
pub struct Executed {
    pub outcome: Result<(), DomainError>,
    pub state: PhoneState,
    pub wrote_events: bool,
}

type Reply = oneshot::Sender<Result<Executed, AppError>>;

pub(super) enum Queued {
    Job(Box<Job>, Reply),
    /// Readiness: can a write transaction start and commit?
    Probe(oneshot::Sender<Result<(), AppError>>),
}

/// What every batch needs besides its commands.
pub(super) struct Ctx {
    store: Store,
    policies: Policies,
    sealer: SmsSealer,
    outbox_wakeup: Arc<Notify>,
}

pub(super) enum Writer {
    /// SQLite: the queue of the group-commit task.
    Queue(mpsc::Sender<Queued>),
    /// PostgreSQL: a transaction per request, from the pool.
    Direct(Arc<Ctx>),
}

impl Writer {
    pub fn start(
        store: Store,
        policies: Policies,
        sealer: SmsSealer,
        outbox_wakeup: Arc<Notify>,
    ) -> Writer {
        let single_writer = store.single_writer();
        let ctx = Arc::new(Ctx {
            store,
            policies,
            sealer,
            outbox_wakeup,
        });
        if !single_writer {
            return Writer::Direct(ctx);
        }
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(group_commit(ctx, rx));
        Writer::Queue(tx)
    }

    pub async fn execute(&self, job: Job) -> Result<Executed, AppError> {
        match self {
            Writer::Queue(queue) => {
                let (reply, answer) = oneshot::channel();
                queue
                    .send(Queued::Job(Box::new(job), reply))
                    .await
                    .map_err(|_| AppError::WriterGone)?;
                answer.await.map_err(|_| AppError::WriterGone)?
            }
            Writer::Direct(ctx) => execute_with_retry(ctx, job).await,
        }
    }

    pub async fn probe(&self) -> Result<(), AppError> {
        match self {
            Writer::Queue(queue) => {
                let (reply, answer) = oneshot::channel();
                queue
                    .send(Queued::Probe(reply))
                    .await
                    .map_err(|_| AppError::WriterGone)?;
                answer.await.map_err(|_| AppError::WriterGone)?
            }
            Writer::Direct(ctx) => empty_transaction(&ctx.store).await,
        }
    }
}

async fn empty_transaction(store: &Store) -> Result<(), AppError> {
    store.begin().await?.commit().await?;
    Ok(())
}

/// PostgreSQL: one command, its own transaction; a lost race on the sequence is re-run.
async fn execute_with_retry(ctx: &Ctx, job: Job) -> Result<Executed, AppError> {
    let jobs = [job];
    for attempt in 1..=MAX_RETRIES {
        match run_contained(ctx, &jobs).await {
            Err(AppError::Store(StoreError::Conflict(_))) if attempt < MAX_RETRIES => {
                tracing::debug!(attempt, "lost a race on the user's sequence; re-running");
            }
            other => return other,
        }
    }
    unreachable!("the last attempt returns")
}

/// Runs one command with a panic contained to it.
async fn run_contained(ctx: &Ctx, jobs: &[Job]) -> Result<Executed, AppError> {
    match AssertUnwindSafe(run_batch(ctx, jobs)).catch_unwind().await {
        Ok(Ok(mut results)) => results.pop().expect("one result per command"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            tracing::error!("a command panicked; its transaction was rolled back");
            Err(AppError::Panicked)
        }
    }
}

/// SQLite: takes every command already queued (up to `MAX_BATCH`), runs them in one
/// transaction, and answers each after the commit. A panic is contained to the batch, then
/// to the command that raised it; the next transaction starts on a fresh connection.
async fn group_commit(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Queued>) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        let mut jobs = Vec::with_capacity(queued.len());
        let mut replies = Vec::with_capacity(queued.len());
        let mut probes = Vec::new();
        for q in queued.drain(..) {
            match q {
                Queued::Job(job, reply) => {
                    jobs.push(*job);
                    replies.push(reply);
                }
                Queued::Probe(reply) => probes.push(reply),
            }
        }
        if !jobs.is_empty() {
            let results = match AssertUnwindSafe(run_isolated(&ctx, &jobs))
                .catch_unwind()
                .await
            {
                Ok(results) => results,
                Err(_) => {
                    tracing::error!(
                        commands = jobs.len(),
                        "SQLite writer panicked in a batch; restarting it and re-running the batch one command at a time"
                    );
                    let mut results = Vec::with_capacity(jobs.len());
                    for job in &jobs {
                        results.push(run_contained(&ctx, std::slice::from_ref(job)).await);
                    }
                    results
                }
            };
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        for reply in probes {
            let _ = reply.send(empty_transaction(&ctx.store).await);
        }
    }
}

/// Runs a batch; when it fails for a reason one of its commands may cause (bad data, a
/// violated constraint), runs each command alone so only that one fails. When the database
/// itself is unavailable, every command gets that answer at once.
async fn run_isolated(ctx: &Ctx, jobs: &[Job]) -> Vec<Result<Executed, AppError>> {
    match run_batch(ctx, jobs).await {
        Ok(results) => results,
        Err(e) if jobs.len() == 1 => vec![Err(e.into())],
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %crate::error_chain(&e), commands = jobs.len(), "write batch failed; nothing of it was committed");
            jobs.iter()
                .map(|_| Err(AppError::BatchFailed { transient: true }))
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), commands = jobs.len(), "write batch failed; re-running its commands one by one");
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                let one = run_batch(ctx, std::slice::from_ref(job)).await;
                results.push(match one {
                    Ok(mut r) => r.pop().expect("one result per command"),
                    Err(e) => Err(e.into()),
                });
            }
            results
        }
    }
}

/// One transaction: per command, load the state (once per user per batch), decide, fold,
/// seal the SMS and write; then commit. A command whose stored state cannot be read fails
/// alone, before anything of it is written.
async fn run_batch(ctx: &Ctx, jobs: &[Job]) -> Result<Vec<Result<Executed, AppError>>, StoreError> {
    let mut tx = ctx.store.begin().await?;
    let mut states: HashMap<&str, PhoneState> = HashMap::new();
    let mut results = Vec::with_capacity(jobs.len());
    let mut queued_sms = false;
    for job in jobs {
        let user = job.user.as_ref();
        crate::faults::panic_if_asked(user, "writer");
        let state = match states.remove(user) {
            Some(s) => s,
            None => match tx.load_state(user).await {
                Ok(s) => s,
                Err(e @ StoreError::DamagedState(_)) => {
                    results.push(Err(e.into()));
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        if let Some(id) = &job.delivered_message
            && !tx.mark_delivered(id, job.now).await?
        {
            results.push(Ok(Executed {
                outcome: Ok(()),
                state: state.clone(),
                wrote_events: false,
            }));
            states.insert(user, state);
            continue;
        }
        let decision = decide(&state, &job.command, &ctx.policies, job.now);
        let first_seq = state.sequence + 1;
        let next = decision
            .events
            .iter()
            .zip(first_seq..)
            .fold(state, |s, (event, seq)| s.apply(event, seq, job.now));
        let wrote_events = !decision.events.is_empty();
        if wrote_events {
            let message_id = new_message_id();
            let sealed;
            let recipient;
            let sms = match (&decision.sms, &next.code) {
                (Some(sms), Some(code)) => {
                    sealed = ctx.sealer.seal(sms);
                    recipient = sms.to.masked();
                    Some(NewOutboxRow {
                        id: &message_id,
                        code_sequence: code.sequence,
                        recipient_masked: &recipient,
                        sealed: &sealed,
                    })
                }
                _ => None,
            };
            queued_sms |= sms.is_some();
            tx.write(&Changes {
                user,
                owner: job.owner.as_ref(),
                at: job.now,
                first_seq,
                events: &decision.events,
                state: &next,
                sms,
            })
            .await?;
        }
        results.push(Ok(Executed {
            outcome: decision.outcome,
            state: next.clone(),
            wrote_events,
        }));
        states.insert(user, next);
    }
    tx.commit().await?;
    if queued_sms {
        ctx.outbox_wakeup.notify_waiters();
    }
    Ok(results)
}

fn new_message_id() -> String {
    let mut b = [0u8; 16];
    os_random(&mut b);
    hex::encode(b)
}
