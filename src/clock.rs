//! The time source: real in production, hand-driven in tests so rules on time need no sleeping.
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the Unix epoch; every stored time is one of these.
pub type Millis = i64;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

pub type SharedClock = Arc<dyn Clock>;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Mutex<Millis>);

impl ManualClock {
    pub fn new(start_ms: Millis) -> Self {
        Self(Mutex::new(start_ms))
    }

    pub fn advance_ms(&self, ms: i64) {
        *self.0.lock().expect("clock lock") += ms;
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        *self.0.lock().expect("clock lock")
    }
}

/// RFC 3339 in UTC with milliseconds and a `Z`, as the contract writes dates.
pub fn rfc3339(ms: Millis) -> String {
    let dt: DateTime<Utc> = Utc
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
