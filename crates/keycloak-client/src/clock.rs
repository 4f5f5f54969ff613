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

/// The system clock shifted by a fixed number of seconds (negative: behind), saturating at the epoch and at
/// the year 10000 (assertions refuse such times with a clear error). For tests and for hosts whose offset is
/// known.
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

/// The first second of the year 10000 (`+10000-01-01T00:00:00Z`): where [`shift`] saturates. Assertions
/// refuse times after [`MAX_CLAIM_SECS`], so a saturated time is an error, never a token.
const FAR_FUTURE_SECS: u64 = 253_402_300_800;

/// Latest time (seconds since the epoch) put in an assertion's claims: `9999-12-31T23:59:59Z`.
pub const MAX_CLAIM_SECS: u64 = FAR_FUTURE_SECS - 1;

/// `t` shifted by `secs` seconds, saturating at the epoch and at the year 10000 (never overflowing).
pub(crate) fn shift(t: SystemTime, secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    let far_future = UNIX_EPOCH + Duration::from_secs(FAR_FUTURE_SECS);
    if secs >= 0 {
        t.checked_add(d).map_or(far_future, |s| s.min(far_future))
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
    server.checked_sub(local)
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
    fn shifts_saturate_instead_of_overflowing() {
        let far = unix_secs(shift(SystemTime::now(), i64::MAX));
        assert_eq!(far, FAR_FUTURE_SECS);
        assert_eq!(
            unix_secs(
                OffsetClock {
                    offset_secs: i64::MAX
                }
                .now()
            ),
            FAR_FUTURE_SECS
        );
        assert_eq!(
            unix_secs(
                OffsetClock {
                    offset_secs: i64::MIN
                }
                .now()
            ),
            0
        );
        assert_eq!(
            unix_secs(shift(UNIX_EPOCH + Duration::from_secs(10), 5)),
            15
        );
        // The year-9999 end of httpdate's range against a local clock at the epoch, and the reverse.
        assert_eq!(
            skew_from_date_header("Fri, 31 Dec 9999 23:59:59 GMT", UNIX_EPOCH),
            Some(253_402_300_799)
        );
        assert_eq!(
            skew_from_date_header("Thu, 01 Jan 1970 00:00:00 GMT", shift(UNIX_EPOCH, i64::MAX)),
            Some(-253_402_300_800)
        );
    }

    #[test]
    fn offset_clock_shifts() {
        let behind = unix_secs(OffsetClock { offset_secs: -120 }.now());
        let now = unix_secs(SystemTime::now());
        assert!((118..=121).contains(&(now - behind)), "{}", now - behind);
    }
}
