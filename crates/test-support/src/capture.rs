//! One in-memory `tracing` capture for every test: [`Captured`] keeps what a `fmt` subscriber writes (plain
//! text, no ANSI colours), from every thread, so a test can search the log lines for secrets or count audit
//! fields.
//!
//! - [`capture`]: a TRACE subscriber that is the default for the calling thread while its guard lives (for
//!   tests on one thread, such as `#[tokio::test(flavor = "current_thread")]`).
//! - [`capture_global`]: a subscriber for the whole process, for a test binary that runs work on other
//!   threads; only one can be installed per process.
//! - [`Captured::subscriber`]: a subscriber to scope by hand (`tracing::subscriber::with_default`).

use std::sync::{Arc, Mutex, PoisonError};

use tracing::Level;
use tracing::subscriber::DefaultGuard;

/// Everything the subscribers made by [`capture`], [`capture_global`] or [`Captured::subscriber`] wrote,
/// from every thread. Clones share the buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

/// The length only: the text may hold what a failing test was searching for.
impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        write!(f, "Captured({len} bytes)")
    }
}

impl Captured {
    /// What was written so far, as text (invalid UTF-8, which `fmt` never writes, replaced).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// A `fmt` subscriber for events up to `max_level`, without ANSI colours, writing here.
    #[must_use]
    pub fn subscriber(&self, max_level: Level) -> impl tracing::Subscriber + Send + Sync + 'static {
        tracing_subscriber::fmt()
            .with_max_level(max_level)
            .with_writer(self.clone())
            .with_ansi(false)
            .finish()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A TRACE-level subscriber writing into the returned [`Captured`], the default for this thread while the
/// guard lives.
#[must_use]
pub fn capture() -> (Captured, DefaultGuard) {
    let captured = Captured::default();
    let guard = tracing::subscriber::set_default(captured.subscriber(Level::TRACE));
    // tracing caches each callsite's interest process-wide. A callsite that another test thread registers
    // while this dispatcher is being registered can keep an interest computed without it, and its events
    // then never reach this capture (a race seen under load: a test missed the one event it asserted).
    // Recomputing every callsite's interest now, with this dispatcher registered, closes that window.
    tracing::callsite::rebuild_interest_cache();
    (captured, guard)
}

/// A subscriber for events up to `max_level` writing into the returned [`Captured`], installed as the
/// process's global default.
///
/// # Panics
/// When this process already has a global subscriber (one per test binary).
#[must_use]
pub fn capture_global(max_level: Level) -> Captured {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(captured.subscriber(max_level))
        .unwrap_or_else(|e| panic!("capture_global: {e} (one global subscriber per test binary)"));
    captured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_this_threads_events_while_the_guard_lives() {
        let (captured, guard) = capture();
        tracing::trace!(kid = "k-1", "trace event");
        tracing::info!(outcome = "ok", "info event");
        drop(guard);
        tracing::info!("after the guard");
        let text = captured.text();
        assert!(
            text.contains("TRACE") && text.contains("trace event kid=\"k-1\""),
            "{text}"
        );
        assert!(
            text.contains("INFO") && text.contains("info event outcome=\"ok\""),
            "{text}"
        );
        assert!(!text.contains("after the guard"), "{text}");
        assert!(!text.contains('\u{1b}'), "ANSI escapes in {text:?}");
    }

    #[test]
    fn subscriber_honours_its_level_and_clones_share_the_buffer() {
        let captured = Captured::default();
        let other = captured.clone();
        tracing::subscriber::with_default(captured.subscriber(Level::INFO), || {
            tracing::debug!("too fine");
            tracing::warn!("kept");
        });
        let text = other.text();
        assert!(text.contains("kept"), "{text}");
        assert!(!text.contains("too fine"), "{text}");
    }
}
