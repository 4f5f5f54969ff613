//! One in-memory `tracing` capture for every test: [`Captured`] keeps what a `fmt` subscriber writes (plain
//! text, no ANSI colours), from every thread, so a test can search the log lines for secrets or count audit
//! fields.
//!
//! - [`capture`]: a TRACE subscriber that is the default for the calling thread while its guard lives (for
//!   tests on one thread, such as `#[tokio::test(flavor = "current_thread")]`).
//! - [`capture_global`]: a subscriber for the whole process, for a test binary that runs work on other
//!   threads; only one can be installed per process.
//! - [`Captured::subscriber`]: a subscriber to scope by hand (`tracing::subscriber::with_default`).

use std::sync::{Arc, Mutex, Once, PoisonError};

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
    // tracing caches each callsite's interest process-wide, computed from the dispatchers alive when the
    // callsite is first hit. A callsite another test thread is registering while this dispatcher is being
    // set keeps an interest computed without it — `never`, when no other dispatcher wants it — and its
    // events then never reach this capture, even after a rebuild of the interest cache (the callsite
    // joins the registry only once its interest is stored). Seen under load twice in CI: a test missed the
    // one event it asserted. A global subscriber that answers `sometimes` for every callsite makes every
    // cached interest at least `sometimes`, so each event asks this thread's dispatcher.
    static SOMETIMES: Once = Once::new();
    SOMETIMES.call_once(|| {
        // Another global subscriber (a test binary's own) is fine too: then nothing changes.
        let _ = tracing::subscriber::set_global_default(AskEveryTime);
    });
    let captured = Captured::default();
    let guard = tracing::subscriber::set_default(captured.subscriber(Level::TRACE));
    tracing::callsite::rebuild_interest_cache();
    (captured, guard)
}

/// The process's global subscriber under [`capture`]: keeps nothing, but never lets tracing cache a
/// callsite as uninteresting.
struct AskEveryTime;

impl tracing::Subscriber for AskEveryTime {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
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

    /// A callsite first hit on a thread without a capture (so no dispatcher wanted it) still reaches a
    /// capture set later on another thread: the global subscriber keeps its cached interest `sometimes`.
    #[test]
    fn a_callsite_first_hit_elsewhere_still_reaches_the_capture() {
        let (first, guard) = capture();
        drop(guard);
        assert!(tracing::dispatcher::has_been_set());
        let emit = || tracing::warn!(outcome = "error", "first hit elsewhere");
        std::thread::spawn(emit).join().unwrap();
        let (captured, _guard) = capture();
        emit();
        assert!(
            captured.text().contains("first hit elsewhere"),
            "{captured:?}"
        );
        // The thread without a capture kept nothing.
        assert!(!first.text().contains("first hit elsewhere"));
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
