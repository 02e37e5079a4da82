//! The one rate limiter of the server: at most `limit` events per key in any sliding minute. It
//! counts API-key requests, failed admin logins, demo uploads per address, and demo jobs per
//! client and per network.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);

/// Sliding one-minute windows, by key.
#[derive(Default)]
pub struct RateLimiter {
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Counts an event for `who`; Err(seconds to wait) when it already had `limit` this minute.
    pub fn hit(&self, who: &str, limit: u32) -> Result<(), u64> {
        self.hit_all(&[(who, limit)]).map_err(|(_, wait)| wait)
    }

    /// Counts one event for every key, or none: Err((index of the first key over its limit,
    /// seconds to wait)).
    pub fn hit_all(&self, keys: &[(&str, u32)]) -> Result<(), (usize, u64)> {
        let mut map = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() > 4096 {
            // Forget keys whose events are all older than a minute (bounded memory).
            map.retain(|_, q| q.back().is_some_and(|t| now - *t < MINUTE));
        }
        for (i, (who, limit)) in keys.iter().enumerate() {
            if let Some(wait) = Self::over(map.entry((*who).to_owned()).or_default(), *limit, now) {
                return Err((i, wait));
            }
        }
        for (who, _) in keys {
            map.entry((*who).to_owned()).or_default().push_back(now);
        }
        Ok(())
    }

    /// Err(seconds to wait) when `who` has used up `limit` this minute; counts nothing.
    pub fn check(&self, who: &str, limit: u32) -> Result<(), u64> {
        let mut map = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(who) {
            Some(q) => Self::over(q, limit, Instant::now()).map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    /// Drops events older than a minute; Some(seconds until the oldest leaves) when `limit` remain.
    fn over(q: &mut VecDeque<Instant>, limit: u32, now: Instant) -> Option<u64> {
        while q.front().is_some_and(|t| now - *t >= MINUTE) {
            q.pop_front();
        }
        // With a zero limit there is no oldest event to wait for: a whole minute.
        let oldest = q.front().copied().unwrap_or(now);
        (q.len() >= limit as usize).then(|| MINUTE.saturating_sub(now - oldest).as_secs().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_counts_all_or_nothing() {
        let r = RateLimiter::default();
        assert!(r.hit("a", 2).is_ok() && r.hit("a", 2).is_ok());
        let wait = r.hit("a", 2).unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        assert_eq!(r.check("a", 2), Err(wait));
        assert!(r.hit("b", 2).is_ok() && r.check("b", 2).is_ok());
        // The second key is over its limit: neither is counted.
        assert_eq!(r.hit_all(&[("c", 5), ("b", 2)]).map_err(|e| e.0), Ok(()));
        assert_eq!(r.hit_all(&[("c", 5), ("b", 2)]).map_err(|e| e.0), Err(1));
        assert!(
            r.hit("c", 2).is_ok(),
            "c was counted once, by the call that passed"
        );
        assert!(r.hit("c", 2).is_err());
        // A zero limit refuses at once.
        assert!(r.hit("z", 0).is_err());
    }
}
