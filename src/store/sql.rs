//! SQL shared by both backends: `$n` placeholders and types that SQLite and PostgreSQL read
//! alike. The macro instantiates the same functions for each backend's connection type.

/// Folds a command into the open transaction: load the state, decide, append events, update
/// the projection, queue the SMS. `$load_sql` is the backend's (PostgreSQL locks the row);
/// `$write` stores a command's changes (`write_separately` here, or one statement of the
/// backend's own).
macro_rules! backend_sql {
    ($db:ty, $conn:ty, $pool:ty, load_state = $load_sql:literal, claim = $claim_sql:literal,
     write = $write:path) => {
        use std::collections::HashMap;

        use sqlx::Row;

        use crate::clock::Millis;
        use crate::domain::{Event, PhoneState};
        use crate::store::{
            Changes, ClaimedSms, Command, CommandResult, OutboxRow, OutboxSettle, QueueSms,
            QueueStats, SmsSealer, StoreError, StoredEvent, new_message_id,
        };

        fn unavailable(e: sqlx::Error) -> StoreError {
            StoreError::Unavailable(e)
        }

        fn decode_state(json: &str) -> Result<PhoneState, StoreError> {
            serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("phone state: {e}")))
        }

        /// Runs one command inside the caller's transaction. `states` caches what earlier
        /// commands of the same transaction wrote, so they see each other.
        pub(in crate::store) async fn apply_command(
            conn: &mut $conn,
            cmd: &Command,
            sealer: &dyn SmsSealer,
            states: &mut HashMap<String, PhoneState>,
        ) -> Result<(CommandResult, bool), sqlx::Error> {
            let user = cmd.user.as_ref().to_owned();
            let state = match states.remove(&user) {
                Some(s) => s,
                None => load_state(conn, &user).await?,
            };
            if let Some(id) = &cmd.delivered_message
                && !mark_delivered(conn, id, cmd.now).await?
            {
                states.insert(user, state.clone());
                let result = CommandResult { outcome: Ok(()), state, wrote_events: false };
                return Ok((result, false));
            }
            let decision = (cmd.decide)(&state);
            let first_seq = state.sequence + 1;
            let mut next = state;
            for (i, event) in decision.events.iter().enumerate() {
                next = next.apply(event, first_seq + i as u64, cmd.now);
            }
            let wrote_events = !decision.events.is_empty();
            let sms = match (&decision.sms, &next.code) {
                (Some(sms), Some(code)) => Some(QueueSms {
                    id: new_message_id(),
                    code_sequence: code.sequence,
                    recipient_masked: sms.to.masked(),
                    sealed: sealer.seal(sms, "user.human.phone.code.added"),
                }),
                _ => None,
            };
            let queued = sms.is_some();
            if wrote_events {
                let changes = Changes {
                    user: &user,
                    owner: cmd.owner.as_ref(),
                    at: cmd.now,
                    first_seq,
                    events: &decision.events,
                    state: &next,
                    sms,
                };
                $write(conn, &changes).await?;
            }
            let result = CommandResult { outcome: decision.outcome, state: next.clone(), wrote_events };
            states.insert(user, next);
            Ok((result, queued))
        }

        async fn load_state(conn: &mut $conn, user: &str) -> Result<PhoneState, sqlx::Error> {
            let row = sqlx::query($load_sql).bind(user).fetch_optional(&mut *conn).await?;
            match row {
                None => Ok(PhoneState::default()),
                Some(r) => decode_state(r.get::<&str, _>(0))
                    .map_err(|e| sqlx::Error::Decode(Box::new(std::io::Error::other(e.to_string())))),
            }
        }

        /// Stores a command's changes statement by statement (SQLite has no writable CTEs).
        #[allow(dead_code, reason = "PostgreSQL writes its changes in one statement")]
        async fn write_separately(conn: &mut $conn, c: &Changes<'_>) -> Result<(), sqlx::Error> {
            for (i, chunk) in c.events.chunks(2).enumerate() {
                append_events(conn, c.user, c.first_seq + 2 * i as u64, chunk, c.at, c.owner).await?;
            }
            upsert_phone(conn, c.user, c.owner, c.state).await?;
            if let Some(sms) = &c.sms {
                sqlx::query(
                    "INSERT INTO sms_outbox (id, user_id, resource_owner, code_sequence, recipient_masked,
                                             payload, status, attempts, next_attempt_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)",
                )
                .bind(&sms.id)
                .bind(c.user)
                .bind(c.owner)
                .bind(sms.code_sequence as i64)
                .bind(&sms.recipient_masked)
                .bind(&sms.sealed)
                .bind(c.at)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        /// Appends one or two events (a decision's usual size) in one statement, numbered
        /// from `seq`: fewer round trips on the write path.
        #[allow(dead_code, reason = "PostgreSQL writes its changes in one statement")]
        async fn append_events(
            conn: &mut $conn,
            user: &str,
            seq: u64,
            events: &[Event],
            at: Millis,
            owner: &str,
        ) -> Result<(), sqlx::Error> {
            let sql = if events.len() == 2 {
                "INSERT INTO events (aggregate_id, sequence, event_type, payload, created_at, resource_owner)
                 VALUES ($1, $2, $3, $4, $5, $6), ($1, $7, $8, $9, $5, $6)"
            } else {
                "INSERT INTO events (aggregate_id, sequence, event_type, payload, created_at, resource_owner)
                 VALUES ($1, $2, $3, $4, $5, $6)"
            };
            let mut q = sqlx::query(sql)
                .bind(user)
                .bind(seq as i64)
                .bind(events[0].event_type())
                .bind(events[0].payload().to_string())
                .bind(at)
                .bind(owner);
            if let Some(second) = events.get(1) {
                q = q
                    .bind(seq as i64 + 1)
                    .bind(second.event_type())
                    .bind(second.payload().to_string());
            }
            q.execute(&mut *conn).await?;
            Ok(())
        }

        #[allow(dead_code, reason = "PostgreSQL writes its changes in one statement")]
        async fn upsert_phone(conn: &mut $conn, user: &str, owner: &str, state: &PhoneState) -> Result<(), sqlx::Error> {
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

        /// True when the message was still pending and is now delivered (text wiped).
        async fn mark_delivered(conn: &mut $conn, id: &str, now: Millis) -> Result<bool, sqlx::Error> {
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

        pub(in crate::store) async fn phone(pool: &$pool, user: &str) -> Result<Option<PhoneState>, StoreError> {
            let row = sqlx::query("SELECT state FROM phones WHERE user_id = $1")
                .bind(user)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?;
            row.map(|r| decode_state(r.get::<&str, _>(0))).transpose()
        }

        pub(in crate::store) async fn events(pool: &$pool, user: &str) -> Result<Vec<StoredEvent>, StoreError> {
            let rows = sqlx::query(
                "SELECT sequence, event_type, payload, created_at, resource_owner
                 FROM events WHERE aggregate_id = $1 ORDER BY sequence",
            )
            .bind(user)
            .fetch_all(pool)
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

        pub(in crate::store) async fn claim_due(
            pool: &$pool,
            now: Millis,
            lease_until: Millis,
            limit: u32,
        ) -> Result<Vec<ClaimedSms>, StoreError> {
            let rows = sqlx::query($claim_sql)
                .bind(lease_until)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(pool)
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

        pub(in crate::store) async fn settle(pool: &$pool, id: &str, how: OutboxSettle, now: Millis) -> Result<(), StoreError> {
            let q = match &how {
                OutboxSettle::Retry { next_attempt_at, error } => sqlx::query(
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
            q.execute(pool).await.map_err(unavailable)?;
            Ok(())
        }

        pub(in crate::store) async fn release(pool: &$pool, ids: &[String]) -> Result<(), StoreError> {
            for id in ids {
                sqlx::query("UPDATE sms_outbox SET lease_until = NULL WHERE id = $1 AND status = 'pending'")
                    .bind(id.as_str())
                    .execute(pool)
                    .await
                    .map_err(unavailable)?;
            }
            Ok(())
        }

        pub(in crate::store) async fn outbox(pool: &$pool) -> Result<Vec<OutboxRow>, StoreError> {
            let rows = sqlx::query(
                "SELECT id, user_id, recipient_masked, status, attempts, next_attempt_at, last_error,
                        CAST(CASE WHEN payload IS NULL THEN 0 ELSE 1 END AS BIGINT)
                 FROM sms_outbox ORDER BY created_at, code_sequence, id",
            )
            .fetch_all(pool)
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

        pub(in crate::store) async fn queue_stats(pool: &$pool, now: Millis) -> Result<QueueStats, StoreError> {
            let r = sqlx::query(
                "SELECT
                   CAST(COALESCE(SUM(CASE WHEN status = 'pending' AND next_attempt_at <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT),
                   CAST(COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT),
                   CAST(COALESCE(SUM(CASE WHEN status = 'parked' THEN 1 ELSE 0 END), 0) AS BIGINT),
                   MIN(CASE WHEN status = 'pending' AND next_attempt_at <= $1 THEN created_at END)
                 FROM sms_outbox",
            )
            .bind(now)
            .fetch_one(pool)
            .await
            .map_err(unavailable)?;
            Ok(QueueStats {
                due: r.get::<i64, _>(0) as u64,
                pending: r.get::<i64, _>(1) as u64,
                parked: r.get::<i64, _>(2) as u64,
                oldest_due_age_ms: r.get::<Option<i64>, _>(3).map(|t| (now - t).max(0)).unwrap_or(0),
            })
        }

        pub(in crate::store) async fn ping(pool: &$pool) -> Result<(), StoreError> {
            sqlx::query("SELECT 1").execute(pool).await.map_err(unavailable)?;
            Ok(())
        }
    };
}

pub(crate) use backend_sql;
