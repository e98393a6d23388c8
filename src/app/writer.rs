//! The write path: group commit. Tasks take whatever commands are queued and run them in one
//! transaction (one commit for many requests): one task on SQLite, which has one writer
//! anyway, `database_writers` on PostgreSQL. A batch that lost a race with another writer
//! (another task or replica) is re-run; a failing command fails only itself.
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::FutureExt;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use super::AppError;
use crate::clock::Millis;
use crate::domain::{
    Command, CounterId, Counters, Decision, DomainError, NumberFacts, PhoneState, Policies,
    ResourceOwner, SendLimits, UserId, decide, os_random,
};
use crate::sealed_sms::SmsSealer;
use crate::store::{
    BatchWrites, CounterAdd, LoadedStates, NewEvent, NewOutboxRow, Store, StoreError,
};

/// Commands committed in one transaction at most; one fsync covers them all.
const MAX_BATCH: usize = 256;
/// A batch that lost a race on a sequence to another replica is re-run this often.
const MAX_RETRIES: usize = 8;
/// Ended send-counter windows are deleted at most this often per process.
const PRUNE_EVERY_MS: i64 = 60_000;

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
    /// Where the request came from, for the per-client-address limit.
    pub client: Option<IpAddr>,
}

/// What a command did: its answer, the state after it, and whether it wrote events.
#[derive(Debug, Clone)]
pub struct Executed {
    pub outcome: Result<(), DomainError>,
    pub state: PhoneState,
    pub wrote_events: bool,
}

type Reply = oneshot::Sender<Result<Executed, AppError>>;

enum Queued {
    Job(Box<Job>, Reply),
    /// Readiness: can a write transaction start and commit?
    Probe(oneshot::Sender<Result<(), AppError>>),
}

/// What every batch needs besides its commands.
struct Ctx {
    store: Store,
    policies: Policies,
    sealer: SmsSealer,
    outbox_wakeup: Arc<Notify>,
    /// When this process last pruned ended send-counter windows.
    last_prune: AtomicI64,
}

/// The queue of the group-commit tasks.
pub(super) struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl Writer {
    pub fn start(
        store: Store,
        policies: Policies,
        sealer: SmsSealer,
        outbox_wakeup: Arc<Notify>,
    ) -> Writer {
        let writers = store.writers();
        let ctx = Arc::new(Ctx {
            store,
            policies,
            sealer,
            outbox_wakeup,
            last_prune: AtomicI64::new(i64::MIN),
        });
        let (queue, rx) = mpsc::channel(4096);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(group_commit(ctx.clone(), rx.clone()));
        }
        Writer { queue }
    }

    pub async fn execute(&self, job: Job) -> Result<Executed, AppError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued::Job(Box::new(job), reply))
            .await
            .map_err(|_| AppError::WriterGone)?;
        answer.await.map_err(|_| AppError::WriterGone)?
    }

    pub async fn probe(&self) -> Result<(), AppError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued::Probe(reply))
            .await
            .map_err(|_| AppError::WriterGone)?;
        answer.await.map_err(|_| AppError::WriterGone)?
    }
}

async fn empty_transaction(store: &Store) -> Result<(), AppError> {
    Ok(store.empty_transaction().await?)
}

/// Runs a batch, re-running it while it loses a race with another writer (task or replica):
/// a user's next sequence taken, a counter created or filled to its limit, a delivered
/// message settled meanwhile.
async fn run_with_retry(
    ctx: &Ctx,
    jobs: &[Job],
) -> Result<Vec<Result<Executed, AppError>>, StoreError> {
    let mut attempt = 1;
    loop {
        match run_batch(ctx, jobs).await {
            Err(StoreError::Conflict(_)) if attempt < MAX_RETRIES => {
                tracing::debug!(
                    attempt,
                    "lost a race with another writer; re-running the batch"
                );
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Runs one command with a panic contained to it.
async fn run_contained(ctx: &Ctx, jobs: &[Job]) -> Result<Executed, AppError> {
    match AssertUnwindSafe(run_with_retry(ctx, jobs))
        .catch_unwind()
        .await
    {
        Ok(Ok(mut results)) => results.pop().expect("one result per command"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            tracing::error!("a command panicked; its transaction was rolled back");
            Err(AppError::Panicked)
        }
    }
}

/// Takes every command already queued (up to `MAX_BATCH`), runs them in one transaction,
/// and answers each after the commit. A panic is contained to the batch, then to the
/// command that raised it; on SQLite the next transaction starts on a fresh connection.
async fn group_commit(ctx: Arc<Ctx>, rx: Arc<Mutex<mpsc::Receiver<Queued>>>) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    loop {
        // Only the wait for work is shared; batches run side by side.
        if rx.lock().await.recv_many(&mut queued, MAX_BATCH).await == 0 {
            break;
        }
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
    match run_with_retry(ctx, jobs).await {
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
                let one = run_with_retry(ctx, std::slice::from_ref(job)).await;
                results.push(match one {
                    Ok(mut r) => r.pop().expect("one result per command"),
                    Err(e) => Err(e.into()),
                });
            }
            results
        }
    }
}

/// One transaction with a constant number of statements, however many commands: load every
/// user's state at once, decide and fold each command in memory (in queue order, each
/// seeing the ones before it), then write all events, projection rows and outbox rows at
/// once, and commit. A command whose stored state cannot be read fails alone, before
/// anything is written.
async fn run_batch(ctx: &Ctx, jobs: &[Job]) -> Result<Vec<Result<Executed, AppError>>, StoreError> {
    let mut users: Vec<&str> = jobs.iter().map(|j| j.user.as_ref()).collect();
    users.sort_unstable();
    users.dedup();
    // The limits beyond the user's own, on counts every writer shares; read (on PostgreSQL,
    // locked) with the states for the numbers the batch's Sets name, after them for the
    // numbers its Resends find stored.
    let limits = &ctx.policies.limits;
    let mut wanted = counters_wanted(limits, jobs, None);
    let (mut tx, mut loaded, mut counts) = ctx.store.begin_loading(&users, &wanted).await?;
    let resent: Vec<(CounterId, Millis)> = counters_wanted(limits, jobs, Some(&loaded))
        .into_iter()
        .filter(|(id, _)| wanted.binary_search_by(|(w, _)| w.cmp(id)).is_err())
        .collect();
    if !resent.is_empty() {
        counts.extend(tx.counts(&resent).await?);
        wanted.extend(resent);
    }
    let existing: HashSet<CounterId> = counts.keys().cloned().collect();
    let mut counters = Counters::new(counts);
    let deliveries: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.delivered_message.as_deref())
        .collect();
    let delivered = match deliveries.first() {
        None => Default::default(),
        Some(_) => tx.mark_delivered(&deliveries, jobs[0].now).await?,
    };
    let mut states: HashMap<&str, PhoneState> = HashMap::with_capacity(users.len());
    let mut writes = BatchWrites::default();
    let mut changed: Vec<&str> = Vec::new();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let user = job.user.as_ref();
        crate::faults::panic_if_asked(user, "writer");
        let state = match states.remove(user) {
            Some(s) => s,
            None => match loaded.remove(user) {
                None => PhoneState::default(),
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    // Every later command of this user in the batch fails the same way.
                    let error = e.to_string();
                    loaded.insert(user.to_owned(), Err(e));
                    tracing::error!(user, error, "stored phone state is damaged");
                    results.push(Err(AppError::Store(StoreError::Data(sqlx::Error::Decode(
                        error.into(),
                    )))));
                    continue;
                }
            },
        };
        if job
            .delivered_message
            .as_ref()
            .is_some_and(|id| !delivered.contains(id))
        {
            results.push(Ok(Executed {
                outcome: Ok(()),
                state: state.clone(),
                wrote_events: false,
            }));
            states.insert(user, state);
            continue;
        }
        let mut decision = decide(&state, &job.command, &ctx.policies, job.now);
        if let Some(sms) = &decision.sms {
            let keys = limits.keys(&sms.to, sms.region, job.client, job.now);
            if let Err(refused) = counters.admit(&keys, job.now) {
                // Refused like any rule: nothing written, nothing sent.
                decision = Decision {
                    events: vec![],
                    outcome: Err(refused),
                    sms: None,
                };
            }
        }
        let first_seq = state.sequence + 1;
        let next = decision
            .events
            .iter()
            .zip(first_seq..)
            .fold(state, |s, (event, seq)| s.apply(event, seq, job.now));
        let wrote_events = !decision.events.is_empty();
        if wrote_events {
            if !changed.contains(&user) {
                changed.push(user);
            }
            for (event, sequence) in decision.events.iter().zip(first_seq..) {
                writes.events.push(NewEvent {
                    user,
                    sequence,
                    event_type: event.event_type(),
                    payload: event.payload().to_string(),
                    at: job.now,
                    owner: job.owner.as_ref(),
                });
            }
            if let (Some(sms), Some(code)) = (&decision.sms, &next.code) {
                writes.outbox.push(NewOutboxRow {
                    id: new_message_id(job.now),
                    user,
                    owner: job.owner.as_ref(),
                    code_sequence: code.sequence,
                    recipient_masked: sms.to.masked(),
                    sealed: ctx.sealer.seal(sms),
                    at: job.now,
                });
            }
        }
        results.push(Ok(Executed {
            outcome: decision.outcome,
            state: next.clone(),
            wrote_events,
        }));
        states.insert(user, next);
    }
    writes.phones = changed
        .into_iter()
        .map(|user| (user, states[user].to_stored()))
        .collect();
    writes.counters = counters
        .added()
        .map(|(id, added)| CounterAdd {
            id,
            count: added.count,
            expires_at: added.expires_at,
            max: added.max,
            exists: existing.contains(id),
        })
        .collect();
    if !writes.counters.is_empty() {
        // Keeps the table to the windows still running (bounded by the sends they allow).
        let now = jobs[0].now;
        let last = ctx.last_prune.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PRUNE_EVERY_MS {
            ctx.last_prune.store(now, Ordering::Relaxed);
            tx.prune_counters(now).await?;
        }
    }
    tx.write_and_commit(&writes).await?;
    if !writes.outbox.is_empty() {
        ctx.outbox_wakeup.notify_waiters();
    }
    Ok(results)
}

/// The counters the batch's sends may touch, with their expiry: without `stored`, those of
/// the numbers its Sets name; with it, those of the numbers its Resends find stored (a Set
/// earlier in the batch names its number itself).
fn counters_wanted(
    limits: &SendLimits,
    jobs: &[Job],
    stored: Option<&LoadedStates>,
) -> Vec<(CounterId, Millis)> {
    if !limits.any() {
        return Vec::new();
    }
    let mut wanted: Vec<(CounterId, Millis)> = Vec::new();
    for job in jobs {
        let to = match (&job.command, stored) {
            (Command::Set { phone, .. }, None) => Some(phone),
            (Command::Resend { .. }, Some(stored)) => stored
                .get(job.user.as_ref())
                .and_then(|s| s.as_ref().ok())
                .and_then(|s| s.phone.as_ref()),
            _ => None,
        };
        if let Some(to) = to {
            let region = NumberFacts::of(to).region;
            let keys = limits.keys(to, region, job.client, job.now);
            wanted.extend(keys.into_iter().map(|k| (k.id, k.expires_at)));
        }
    }
    wanted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    wanted
}

/// 32 hex digits: the time in milliseconds (48 bits) then 80 random bits. Ids made later sort
/// later, so new outbox rows land at the end of the id index instead of on a random page of
/// it: one page fewer written per queued SMS, on both engines.
fn new_message_id(now: Millis) -> String {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&now.max(0).to_be_bytes()[2..]);
    os_random(&mut b[6..]);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::new_message_id;

    #[test]
    fn message_ids_are_unique_and_sort_by_time() {
        let earlier = new_message_id(1_700_000_000_000);
        let later = new_message_id(1_700_000_000_001);
        assert_eq!(earlier.len(), 32);
        assert!(earlier.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(earlier < later, "{earlier} {later}");
        // Same millisecond: told apart by the random part.
        let same: std::collections::HashSet<String> = (0..1000)
            .map(|_| new_message_id(1_700_000_000_000))
            .collect();
        assert_eq!(same.len(), 1000);
        assert!(same.iter().all(|id| id[..12] == earlier[..12]));
    }
}
