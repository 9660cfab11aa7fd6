//! Rate limiting: a token bucket per API key, and one per client address for the work done
//! before a key is known (anonymous introspection, looking up a key that is not cached), in this
//! process (with several instances each allows the rate; a shared limit would need a shared
//! store). Past it: HTTP 429 with `Retry-After`, code `RATE_LIMITED`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Tokens added per second; 0 turns limiting off.
    pub per_second: f64,
    /// Most tokens a key can save up (the burst it may send at once).
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 50.0,
            burst: 200.0,
        }
    }
}

/// Buckets kept at the most; past it, the buckets that have refilled (which a new bucket
/// would equal) are dropped, so a flood of new keys or addresses cannot grow the map.
const MAX_BUCKETS: usize = 65_536;

/// Token buckets by `K`: an API key's id, or for unauthenticated work the client's address.
#[derive(Clone)]
pub struct RateLimiter<K = i64> {
    limit: RateLimit,
    buckets: Arc<Mutex<Buckets<K>>>,
}

struct Buckets<K> {
    by_key: HashMap<K, (f64, Instant)>,
    /// When the full map was last pruned (at most once a second: pruning reads every bucket).
    pruned: Option<Instant>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            pruned: None,
        }
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Arc::default(),
        }
    }

    /// Takes a token for `key`; `Err(seconds)` to wait when there is none.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        if self.limit.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Buckets { by_key, pruned } = &mut *guard;
        if by_key.len() >= MAX_BUCKETS && !by_key.contains_key(key) {
            if pruned.is_none_or(|at| now.duration_since(at).as_secs() >= 1) {
                let (rate, burst) = (self.limit.per_second, self.limit.burst);
                by_key.retain(|_, (tokens, last)| {
                    *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
                });
                *pruned = Some(now);
            }
            if by_key.len() >= MAX_BUCKETS {
                // Every bucket is in use: the newcomer waits as if it had none left.
                return Err(1);
            }
        }
        let (tokens, last) = by_key.entry(key.clone()).or_insert((self.limit.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.limit.per_second)
            .min(self.limit.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.limit.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_with_a_wait() {
        let l = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 3.0,
        });
        assert!(l.check(&1).is_ok() && l.check(&1).is_ok() && l.check(&1).is_ok());
        assert_eq!(l.check(&1), Err(1));
        assert!(l.check(&2).is_ok(), "keys have their own buckets");
        assert!(
            RateLimiter::new(RateLimit {
                per_second: 0.0,
                burst: 0.0
            })
            .check(&1)
            .is_ok(),
            "0 = off"
        );
    }

    #[test]
    fn a_flood_of_new_keys_keeps_the_map_bounded() {
        let l = RateLimiter::<u64>::new(RateLimit {
            per_second: 1.0,
            burst: 2.0,
        });
        for k in 0..(MAX_BUCKETS as u64 + 10) {
            let _ = l.check(&k);
        }
        let len = l.buckets.lock().expect("lock").by_key.len();
        assert!(len <= MAX_BUCKETS, "{len}");
    }
}
