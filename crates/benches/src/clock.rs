//! The benchmarks' clock: thread CPU time (default) or wall-clock time (`KEYBOUND_BENCH_CLOCK=wall`).
//!
//! `openssl speed` reports operations per *user CPU second* of its process unless given `-elapsed`, so a
//! wall-clock benchmark compared with it on a loaded machine looks slower than it is by the share of the CPU
//! it did not get (this is what made aws-lc-rs RSA signing look 35 % slower than OpenSSL; see
//! `docs/benchmarks.md`). Counting CPU time of the benchmark thread compares like with like and stays stable
//! while other processes compete for the cores.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Environment variable choosing the clock: `cpu` (default) or `wall`.
pub const CLOCK_ENV: &str = "KEYBOUND_BENCH_CLOCK";

/// A criterion [`Measurement`] on thread CPU time or wall-clock time, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    cpu: bool,
}

impl Clock {
    /// Thread CPU time.
    pub const CPU: Self = Self { cpu: true };
    /// Wall-clock time.
    pub const WALL: Self = Self { cpu: false };

    /// The clock [`CLOCK_ENV`] asks for (CPU time unless it says `wall`).
    #[must_use]
    pub fn from_env() -> Self {
        match std::env::var(CLOCK_ENV).as_deref() {
            Ok("wall") => Self::WALL,
            _ => Self::CPU,
        }
    }

    /// `cpu` or `wall`.
    #[must_use]
    pub fn name(self) -> &'static str {
        if self.cpu { "cpu" } else { "wall" }
    }

    /// The current reading of this clock (from an arbitrary origin).
    #[must_use]
    pub fn now(self) -> Duration {
        if self.cpu {
            thread_cpu_time()
        } else {
            static ORIGIN: OnceLock<Instant> = OnceLock::new();
            ORIGIN.get_or_init(Instant::now).elapsed()
        }
    }
}

/// CPU time consumed by the calling thread so far (user + system), `CLOCK_THREAD_CPUTIME_ID`.
#[must_use]
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on every Linux.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }

    fn end(&self, started: Duration) -> Duration {
        self.now().saturating_sub(started)
    }

    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds either way: criterion's own duration formatter fits.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}
