//! Limits on codes beyond the user's own (users are cheap to make): per destination number
//! against bombing, per client address, and circuit breakers per region and in total against
//! pumping. Counted in fixed windows whose counts the store keeps for every replica; the
//! rules here are pure: the caller passes the counts and the time.
use std::collections::HashMap;
use std::net::IpAddr;

use super::{DomainError, PhoneNumber, Region, Rule};
use crate::clock::Millis;

/// At most `max` codes per fixed window of `window_ms`; `max == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window_ms: i64,
}

impl Limit {
    pub const fn new(max: u64, window_ms: i64) -> Limit {
        Limit { max, window_ms }
    }

    fn on(&self) -> bool {
        self.max > 0 && self.window_ms > 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendLimits {
    /// Codes to one number, whoever asks: stops bombing one phone from many accounts.
    pub destination: Limit,
    /// Codes asked from one client address (an IPv6 /64); off by default.
    pub client: Limit,
    /// Circuit breaker: codes to one region, all users together.
    pub region: Limit,
    /// Circuit breaker: codes in total.
    pub global: Limit,
}

impl Default for SendLimits {
    fn default() -> Self {
        Self {
            destination: Limit::new(5, 3_600_000),
            client: Limit::new(0, 3_600_000),
            region: Limit::new(120, 60_000),
            global: Limit::new(600, 60_000),
        }
    }
}

/// One counter: a key (rule and subject) and the start of its window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterId {
    pub key: String,
    pub window_start: Millis,
}

/// A counter one send must fit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterKey {
    pub id: CounterId,
    pub rule: Rule,
    pub max: u64,
    /// The end of the window: the counter can be forgotten after it.
    pub expires_at: Millis,
}

impl SendLimits {
    pub fn any(&self) -> bool {
        [self.destination, self.client, self.region, self.global]
            .iter()
            .any(Limit::on)
    }

    /// The counters a code to `to` from `client` at `now` must fit in, in the order their
    /// refusals are reported.
    pub fn keys(
        &self,
        to: &PhoneNumber,
        region: Option<Region>,
        client: Option<IpAddr>,
        now: Millis,
    ) -> Vec<CounterKey> {
        let subjects = [
            (Rule::ClientAddress, self.client, client.map(client_key)),
            (
                Rule::Destination,
                self.destination,
                Some(format!("d:{}", to.as_ref())),
            ),
            (
                Rule::RegionBreaker,
                self.region,
                region.map(|r| format!("r:{r}")),
            ),
            (Rule::GlobalBreaker, self.global, Some("g".to_owned())),
        ];
        subjects
            .into_iter()
            .filter(|(_, limit, _)| limit.on())
            .filter_map(|(rule, limit, key)| {
                let window_start = now - now.rem_euclid(limit.window_ms);
                Some(CounterKey {
                    id: CounterId {
                        key: key?,
                        window_start,
                    },
                    rule,
                    max: limit.max,
                    expires_at: window_start + limit.window_ms,
                })
            })
            .collect()
    }
}

/// A client's counter key: the address, or for IPv6 its /64 (one subscriber's prefix, in
/// which an attacker may pick addresses freely).
fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("c:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("c:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The counts of a batch's counters: as loaded from the store, plus what the batch adds.
#[derive(Debug, Default)]
pub struct Counters {
    counts: HashMap<CounterId, u64>,
    added: HashMap<CounterId, Added>,
}

/// What admitted sends add to one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub count: u64,
    pub expires_at: Millis,
    /// The counter's limit: a writer that cannot lock the counter checks, when it adds,
    /// that the sum stays within it.
    pub max: u64,
}

impl Counters {
    pub fn new(loaded: HashMap<CounterId, u64>) -> Counters {
        Counters {
            counts: loaded,
            added: HashMap::new(),
        }
    }

    /// Counts one send in every counter, or refuses it by the first full one and counts
    /// nothing.
    pub fn admit(&mut self, keys: &[CounterKey], now: Millis) -> Result<(), DomainError> {
        for k in keys {
            if self.counts.get(&k.id).copied().unwrap_or(0) >= k.max {
                return Err(DomainError::SendLimited {
                    rule: k.rule,
                    retry_after_secs: ((k.expires_at - now).max(1) as u64).div_ceil(1000),
                });
            }
        }
        for k in keys {
            *self.counts.entry(k.id.clone()).or_default() += 1;
            self.added
                .entry(k.id.clone())
                .or_insert(Added {
                    count: 0,
                    expires_at: k.expires_at,
                    max: k.max,
                })
                .count += 1;
        }
        Ok(())
    }

    /// What the admitted sends add to each counter.
    pub fn added(&self) -> impl Iterator<Item = (&CounterId, &Added)> {
        self.added.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NumberFacts;

    const HOUR: i64 = 3_600_000;

    fn phone(raw: &str) -> PhoneNumber {
        PhoneNumber::parse(raw).unwrap()
    }

    /// One send attempt: to whom, from where, when (ms); and what it should get.
    type Row = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Millis,
        Option<(Rule, u64)>,
    );

    fn run(limits: &SendLimits, rows: &[Row]) {
        let mut counters = Counters::default();
        for (i, (why, to, client, at, want)) in rows.iter().enumerate() {
            let to = phone(to);
            let region = NumberFacts::of(&to).region;
            let client = client.map(|c| c.parse().unwrap());
            let got = counters.admit(&limits.keys(&to, region, client, *at), *at);
            let want = match want {
                None => Ok(()),
                Some((rule, secs)) => Err(DomainError::SendLimited {
                    rule: *rule,
                    retry_after_secs: *secs,
                }),
            };
            assert_eq!(got, want, "row {i}: {why}");
        }
    }

    /// The clock starts at an hour boundary (10 h after the epoch) so windows are plain.
    #[test]
    fn per_destination_limit_table() {
        let t0 = 10 * HOUR;
        let a = "+41710000000";
        let b = "+41791234567";
        let limits = SendLimits::default();
        let five_to_a: Vec<Row> = (0..5)
            .map(|i| ("five codes to one number", a, None, t0 + i * 1000, None))
            .collect();
        let mut rows = five_to_a;
        rows.extend([
            (
                "the sixth waits for the window's end",
                a,
                None,
                t0 + 10_000,
                Some((Rule::Destination, 3590)),
            ),
            ("another number is not affected", b, None, t0 + 10_000, None),
            (
                "a second before the end",
                a,
                None,
                t0 + HOUR - 1000,
                Some((Rule::Destination, 1)),
            ),
            ("a new window", a, None, t0 + HOUR, None),
        ]);
        run(&limits, &rows);
    }

    #[test]
    fn circuit_breakers_table() {
        let t0 = 600 * 60_000;
        let limits = SendLimits {
            destination: Limit::new(0, HOUR),
            client: Limit::new(0, HOUR),
            region: Limit::new(2, 60_000),
            global: Limit::new(3, 60_000),
        };
        run(
            &limits,
            &[
                ("CH 1", "+41710000001", None, t0, None),
                ("CH 2", "+41710000002", None, t0 + 1, None),
                (
                    "CH 3: the region's breaker",
                    "+41710000003",
                    None,
                    t0 + 30_000,
                    Some((Rule::RegionBreaker, 30)),
                ),
                ("DE 1", "+4930123456", None, t0 + 30_000, None),
                (
                    "DE 2: the global breaker",
                    "+4930123457",
                    None,
                    t0 + 45_000,
                    Some((Rule::GlobalBreaker, 15)),
                ),
                ("next minute", "+41710000003", None, t0 + 60_000, None),
            ],
        );
    }

    #[test]
    fn per_client_address_table() {
        let t0 = 10 * HOUR;
        let limits = SendLimits {
            client: Limit::new(2, HOUR),
            ..SendLimits::default()
        };
        run(
            &limits,
            &[
                ("v4 1", "+41710000001", Some("192.0.2.1"), t0, None),
                ("v4 2", "+41710000002", Some("192.0.2.1"), t0, None),
                (
                    "v4 3",
                    "+41710000003",
                    Some("192.0.2.1"),
                    t0,
                    Some((Rule::ClientAddress, 3600)),
                ),
                (
                    "the same address mapped into IPv6",
                    "+41710000003",
                    Some("::ffff:192.0.2.1"),
                    t0,
                    Some((Rule::ClientAddress, 3600)),
                ),
                (
                    "another address",
                    "+41710000003",
                    Some("192.0.2.2"),
                    t0,
                    None,
                ),
                ("v6 1", "+41710000004", Some("2001:db8:0:1::1"), t0, None),
                ("v6 2", "+41710000005", Some("2001:db8:0:1::2"), t0, None),
                (
                    "v6 3, same /64",
                    "+41710000006",
                    Some("2001:db8:0:1:ffff::3"),
                    t0,
                    Some((Rule::ClientAddress, 3600)),
                ),
                (
                    "v6, another /64",
                    "+41710000006",
                    Some("2001:db8:0:2::1"),
                    t0,
                    None,
                ),
                ("no address known", "+41710000007", None, t0, None),
            ],
        );
    }

    #[test]
    fn a_refused_send_counts_nowhere() {
        let t0 = 10 * HOUR;
        let limits = SendLimits {
            global: Limit::new(1, 60_000),
            ..SendLimits::default()
        };
        let to = phone("+41710000000");
        let keys = limits.keys(&to, NumberFacts::of(&to).region, None, t0);
        let mut counters = Counters::default();
        assert_eq!(counters.admit(&keys, t0), Ok(()));
        assert!(counters.admit(&keys, t0).is_err());
        let added: Vec<u64> = counters.added().map(|(_, a)| a.count).collect();
        assert_eq!(
            added,
            vec![1, 1, 1],
            "destination, region and global once each"
        );
    }

    #[test]
    fn turned_off_limits_have_no_counters() {
        let off = SendLimits {
            destination: Limit::new(0, HOUR),
            client: Limit::new(0, HOUR),
            region: Limit::new(0, 60_000),
            global: Limit::new(0, 60_000),
        };
        assert!(!off.any());
        let to = phone("+41710000000");
        assert!(off.keys(&to, None, None, 0).is_empty());
        assert!(SendLimits::default().any());
    }
}
