//! Login rate limits: failed logins counted per (username, source) and per source, lockouts
//! that grow, counters kept in the node's store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::error::Error;
use crate::store::Store;
use crate::store::tables::LOGIN_FAILURES;

/// How many stale limiter entries may pile up before a sweep.
const LIMITER_SWEEP_AT: usize = 1024;

/// The first lockout once a limit is reached; each further failure doubles it, up to the
/// window.
const FIRST_LOCKOUT: Duration = Duration::from_secs(30);

/// Failed logins, counted per (username, source address) and per source address, with a
/// lockout that grows with each failure past the limit (see the module docs). Counters are
/// written through to the store when the limiter has one, so a restart forgets nothing.
pub(crate) struct LoginLimiter {
    user_limit: u32,
    ip_limit: u32,
    window: Duration,
    store: Option<Store>,
    state: Arc<Mutex<HashMap<String, Count>>>,
}

/// Failures of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    failures: u32,
    /// Unix ms of the latest failure (wall clock: counters outlive the process).
    last_ms: i64,
}

/// A login attempt under way; dropping it leaves it counted as a failure.
#[must_use]
pub(crate) struct Attempt {
    pair: String,
    source: String,
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LoginLimiter {
    /// `user_limit` failures per username and source, `ip_limit` per source (0 = no limit),
    /// before lockouts start; counters are forgotten a `window` after their lockout ends.
    /// With a `store`, counters are loaded from it and kept in it.
    pub(crate) fn new(
        user_limit: u32,
        ip_limit: u32,
        window: Duration,
        store: Option<Store>,
    ) -> LoginLimiter {
        let limiter = LoginLimiter {
            user_limit,
            ip_limit,
            window,
            store,
            state: Arc::default(),
        };
        if let Some(store) = &limiter.store {
            match load_counts(store) {
                Ok(counts) => {
                    let now = now_ms();
                    let mut state = limiter.lock();
                    for (key, count) in counts {
                        if !limiter.is_stale(&key, count, now) {
                            state.insert(key, count);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the login counters"),
            }
        }
        limiter
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Count>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limit_of(&self, key: &str) -> u32 {
        if key.starts_with("user\n") {
            self.user_limit
        } else {
            self.ip_limit
        }
    }

    /// How long a counter locks its key after its latest failure.
    fn lockout(&self, key: &str, failures: u32) -> Duration {
        let limit = self.limit_of(key);
        if limit == 0 || failures < limit {
            return Duration::ZERO;
        }
        let doublings = (failures - limit).min(20);
        FIRST_LOCKOUT
            .saturating_mul(1 << doublings)
            .min(self.window)
    }

    /// A counter whose lockout ended a whole window ago is forgotten.
    fn is_stale(&self, key: &str, c: Count, now: i64) -> bool {
        now.saturating_sub(c.last_ms) >= ms(self.lockout(key, c.failures)) + ms(self.window)
    }

    /// Starts an attempt, or refuses it with [`Error::RateLimited`] while a counter of its
    /// username and source, or of its source, is locked.
    pub(crate) fn begin(&self, username: &str, ip: IpAddr) -> Result<Attempt, Error> {
        let user = username.trim().to_lowercase();
        let pair = format!("user\n{user}\n{ip}");
        let source = format!("source\n{ip}");
        {
            let mut state = self.lock();
            // Read under the lock, so the latest failure recorded is never later than `now`.
            let now = now_ms();
            if state.len() > LIMITER_SWEEP_AT {
                state.retain(|k, c| !self.is_stale(k, *c, now));
            }
            let mut wait_ms = 0i64;
            for key in [&pair, &source] {
                if let Some(c) = state.get(key).copied() {
                    if self.is_stale(key, c, now) {
                        state.remove(key);
                        continue;
                    }
                    let lockout = self.lockout(key, c.failures);
                    if !lockout.is_zero() {
                        wait_ms = wait_ms.max(c.last_ms + ms(lockout) - now);
                    }
                }
            }
            if wait_ms > 0 {
                let secs = u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1);
                return Err(Error::RateLimited(secs));
            }
            // Counted as failed from the start: a burst of parallel guesses cannot slip past
            // the limit while the slow password check runs.
            for key in [&pair, &source] {
                let c = state.entry(key.clone()).or_insert(Count {
                    failures: 0,
                    last_ms: now,
                });
                c.failures = c.failures.saturating_add(1);
                // The wall clock may step back; a counter never moves back with it.
                c.last_ms = c.last_ms.max(now);
            }
        }
        self.persist(vec![pair.clone(), source.clone()]);
        Ok(Attempt { pair, source })
    }

    /// The attempt succeeded: its username starts afresh *from its source only* (failures
    /// from elsewhere stay counted), and the source is not charged.
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        {
            let mut state = self.lock();
            state.remove(&attempt.pair);
            uncount(&mut state, &attempt.source);
        }
        self.persist(vec![attempt.pair, attempt.source]);
    }

    /// The attempt could not be judged (no shop yet, storage failure): it does not count.
    pub(crate) fn forgive(&self, attempt: Attempt) {
        {
            let mut state = self.lock();
            uncount(&mut state, &attempt.pair);
            uncount(&mut state, &attempt.source);
        }
        self.persist(vec![attempt.pair, attempt.source]);
    }

    /// Writes the counters of `keys` as they are when the write begins (so of two writes the
    /// later one always stores the later state). A store write may wait for the node's writer:
    /// on a multi-threaded runtime the worker is handed over meanwhile (`block_in_place`).
    fn persist(&self, keys: Vec<String>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let state = self.state.clone();
        let write = move || {
            let result = (|| -> Result<(), Error> {
                let tx = store.db().begin_write()?;
                {
                    let mut table = tx.open_table(LOGIN_FAILURES)?;
                    let state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    for key in &keys {
                        match state.get(key) {
                            Some(c) => {
                                table.insert(key.as_str(), (c.failures, c.last_ms))?;
                            }
                            None => {
                                table.remove(key.as_str())?;
                            }
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })();
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot keep the login counters");
            }
        };
        // Done before the request is answered, not on a detached thread: a write left queued
        // held the store open after the node shut down, so a restart on the same data dir
        // right after could not open it (`web_guard::login_counters_survive_a_restart`).
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(write)
            }
            _ => write(),
        }
    }
}

/// Takes one failure back; a counter at zero is dropped.
fn uncount(state: &mut HashMap<String, Count>, key: &str) {
    if let Some(c) = state.get_mut(key) {
        c.failures = c.failures.saturating_sub(1);
        if c.failures == 0 {
            state.remove(key);
        }
    }
}

/// The stored counters (none when the table was never written).
fn load_counts(store: &Store) -> Result<Vec<(String, Count)>, Error> {
    use redb::ReadableTable;
    let tx = store.read()?;
    let table = match tx.open_table(LOGIN_FAILURES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let (failures, last_ms) = v.value();
        out.push((k.value().to_owned(), Count { failures, last_ms }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<Attempt, Error>) -> u64 {
        match r {
            Err(Error::RateLimited(s)) => s,
            Ok(_) => panic!("the attempt must be refused"),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn limiter_counts_and_frees() {
        let l = LoginLimiter::new(2, 3, Duration::from_secs(600), None);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        drop(l.begin("Ann", ip).unwrap());
        drop(l.begin("ann", ip).unwrap());
        assert!((1..=30).contains(&refused(l.begin("ann ", ip))));
        // Another user from the same address still has one attempt left.
        drop(l.begin("bob", ip).unwrap());
        refused(l.begin("carl", ip));
        // Another address is not affected.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = l.begin("ann", other).unwrap();
        l.succeeded(a);
        for _ in 0..3 {
            l.forgive(l.begin("dora", other).unwrap());
        }
    }

    /// Without limits nothing is ever refused, however many attempts race (a counter's latest
    /// failure once came out later than the `now` of an attempt that read the clock earlier).
    #[test]
    fn no_limits_never_refuse_racing_attempts() {
        let l = std::sync::Arc::new(LoginLimiter::new(0, 0, Duration::from_secs(600), None));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        drop(l.begin("ann", ip).expect("no limit, no refusal"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_success_clears_only_its_own_source() {
        let l = LoginLimiter::new(2, 0, Duration::from_secs(600), None);
        let lan: IpAddr = "192.0.2.1".parse().unwrap();
        let till: IpAddr = "127.0.0.1".parse().unwrap();
        drop(l.begin("ann", lan).unwrap());
        // The cashier logs in at the till between two guesses from the LAN.
        l.succeeded(l.begin("ann", till).unwrap());
        drop(l.begin("ann", lan).unwrap());
        refused(l.begin("ann", lan));
        // The till is not locked by the LAN's guesses.
        l.succeeded(l.begin("ann", till).unwrap());
    }

    #[test]
    fn the_lockout_grows_and_stops_at_the_window() {
        let l = LoginLimiter::new(3, 0, Duration::from_secs(900), None);
        let key = "user\nann\n192.0.2.1";
        assert_eq!(l.lockout(key, 2), Duration::ZERO);
        assert_eq!(l.lockout(key, 3), FIRST_LOCKOUT);
        assert_eq!(l.lockout(key, 4), FIRST_LOCKOUT * 2);
        assert_eq!(l.lockout(key, 5), FIRST_LOCKOUT * 4);
        assert_eq!(l.lockout(key, 60), Duration::from_secs(900));
        // Forgotten only a whole window after the lockout ended.
        let c = Count {
            failures: 4,
            last_ms: 0,
        };
        assert!(!l.is_stale(key, c, 60_000 + 899_999));
        assert!(l.is_stale(key, c, 60_000 + 900_000));
    }

    #[test]
    fn counters_survive_a_new_limiter() {
        let store = Store::memory().unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let l = LoginLimiter::new(2, 0, Duration::from_secs(600), Some(store.clone()));
        drop(l.begin("ann", ip).unwrap());
        drop(l.begin("ann", ip).unwrap());
        drop(l);
        let again = LoginLimiter::new(2, 0, Duration::from_secs(600), Some(store));
        refused(again.begin("ann", ip));
        drop(again.begin("bob", ip).unwrap());
    }
}
