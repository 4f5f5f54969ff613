//! Wall-clock time for assertion claims (`iat`, `exp`, `nbf`), and clock-skew estimation from a server's
//! HTTP `Date` header.
//!
//! Token-cache deadlines use the monotonic clock instead (`std::time::Instant`), so a wall-clock step never
//! makes a cached token look fresher than it is.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time. Inject one to test behaviour under clock skew.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system clock shifted by a fixed number of seconds (negative: behind). For tests and for hosts whose
/// offset is known.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    /// Seconds added to the system clock.
    pub offset_secs: i64,
}

impl Clock for OffsetClock {
    fn now(&self) -> SystemTime {
        shift(SystemTime::now(), self.offset_secs)
    }
}

/// `t` shifted by `secs` seconds (saturating at the epoch).
pub(crate) fn shift(t: SystemTime, secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        t + d
    } else {
        t.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Server clock minus local clock in whole seconds, from an HTTP `Date` header value (1 s resolution).
#[must_use]
pub fn skew_from_date_header(date: &str, local_now: SystemTime) -> Option<i64> {
    let server = httpdate::parse_http_date(date.trim()).ok()?;
    let server = i64::try_from(unix_secs(server)).ok()?;
    let local = i64::try_from(unix_secs(local_now)).ok()?;
    Some(server - local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_from_date() {
        let local = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            skew_from_date_header("Sun, 06 Nov 1994 08:49:37 GMT", local),
            Some(0)
        );
        assert_eq!(
            skew_from_date_header("Sun, 06 Nov 1994 08:51:37 GMT", local),
            Some(120)
        );
        assert_eq!(
            skew_from_date_header("Sun, 06 Nov 1994 08:48:37 GMT", local),
            Some(-60)
        );
        assert_eq!(skew_from_date_header("yesterday", local), None);
    }

    #[test]
    fn offset_clock_shifts() {
        let behind = unix_secs(OffsetClock { offset_secs: -120 }.now());
        let now = unix_secs(SystemTime::now());
        assert!((118..=121).contains(&(now - behind)), "{}", now - behind);
    }
}
