//! Slows down whoever guesses the admin token. Each client address may fail a
//! few times; after that every further failure locks it out for twice as long
//! as the one before (1 s, 2 s, 4 s, … up to 15 minutes), and while it is locked
//! out its attempts are refused with 429 before the token is even compared. A
//! success forgets the address's failures. The record lives in this process:
//! each instance throttles on its own, and the gateway's `limit_req` zone for
//! `/admin/sign-in` bounds them all together.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

/// Failures that cost nothing.
const FREE_FAILURES: u32 = 5;
const LONGEST_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// An address that has not failed for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Addresses remembered before the stale ones are swept out.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
pub(super) struct Throttle {
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Instant,
}

impl Throttle {
    /// `Err(retry_after)` while the address is locked out.
    pub(super) fn admit(&self, client: IpAddr) -> Result<(), Duration> {
        self.admit_at(client, Instant::now())
    }

    /// Records a failed attempt; `Err(retry_after)` when it locks the address out.
    pub(super) fn failed(&self, client: IpAddr) -> Result<(), Duration> {
        self.failed_at(client, Instant::now())
    }

    pub(super) fn succeeded(&self, client: IpAddr) {
        self.clients().remove(&client);
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.clients().get(&client) {
            Some(failures) if failures.locked_until > now => Err(failures.locked_until - now),
            _ => Ok(()),
        }
    }

    fn failed_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut clients = self.clients();
        if clients.len() >= SWEEP_AT {
            clients.retain(|_, failures| {
                failures.locked_until > now || now.duration_since(failures.last) < FORGET_AFTER
            });
        }
        let failures = clients.entry(client).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: now,
        });
        if now.duration_since(failures.last) >= FORGET_AFTER {
            failures.count = 0;
        }
        failures.count += 1;
        failures.last = now;
        if failures.count <= FREE_FAILURES {
            return Ok(());
        }
        let doublings = (failures.count - FREE_FAILURES - 1).min(16);
        let lockout = Duration::from_secs(1 << doublings).min(LONGEST_LOCKOUT);
        failures.locked_until = now + lockout;
        Err(lockout)
    }
}

/// The client's address: the peer's, or, when the peer is a proxy on this
/// machine (the gateway), the address the proxy says it serves
/// (`X-Forwarded-For`, whose last entry is the one the nearest proxy added).
pub(super) fn client_address(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !peer.is_loopback() {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get("X-Forwarded-For")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok());
    Some(forwarded.unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const BOB: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_few_failures_are_free_then_each_locks_out_twice_as_long() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.failed_at(ALICE, start), Ok(()));
        }
        assert_eq!(
            throttle.failed_at(ALICE, start),
            Err(Duration::from_secs(1))
        );
        assert_eq!(throttle.admit_at(ALICE, start), Err(Duration::from_secs(1)));
        assert_eq!(throttle.admit_at(BOB, start), Ok(()));

        let later = start + Duration::from_secs(1);
        assert_eq!(throttle.admit_at(ALICE, later), Ok(()));
        assert_eq!(
            throttle.failed_at(ALICE, later),
            Err(Duration::from_secs(2))
        );
        let mut now = later;
        let mut last = Duration::ZERO;
        for _ in 0..30 {
            now += LONGEST_LOCKOUT;
            last = throttle.failed_at(ALICE, now).expect_err("locked out");
        }
        assert_eq!(last, LONGEST_LOCKOUT);
    }

    #[test]
    fn success_and_time_forgive() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..FREE_FAILURES {
            let _ = throttle.failed_at(ALICE, start);
        }
        throttle.succeeded(ALICE);
        assert_eq!(throttle.failed_at(ALICE, start), Ok(()));

        for _ in 0..FREE_FAILURES {
            let _ = throttle.failed_at(BOB, start);
        }
        assert_eq!(throttle.failed_at(BOB, start + FORGET_AFTER), Ok(()));
    }
}
