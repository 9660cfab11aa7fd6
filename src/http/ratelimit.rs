//! Per-key rate limiting: a token bucket per API key, in this process (with several instances
//! each allows the rate; a shared limit would need a shared store). Past it: HTTP 429 with
//! `Retry-After`, code `RATE_LIMITED`.

use std::collections::HashMap;
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

#[derive(Clone, Default)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Arc<Mutex<HashMap<i64, (f64, Instant)>>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Arc::default(),
        }
    }

    /// Takes a token for `key_id`; `Err(seconds)` to wait when there is none.
    pub fn check(&self, key_id: i64) -> Result<(), u64> {
        if self.limit.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key_id).or_insert((self.limit.burst, now));
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
        assert!(l.check(1).is_ok() && l.check(1).is_ok() && l.check(1).is_ok());
        assert_eq!(l.check(1), Err(1));
        assert!(l.check(2).is_ok(), "keys have their own buckets");
        assert!(
            RateLimiter::new(RateLimit {
                per_second: 0.0,
                burst: 0.0
            })
            .check(1)
            .is_ok(),
            "0 = off"
        );
    }
}
