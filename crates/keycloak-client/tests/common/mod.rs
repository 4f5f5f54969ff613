//! Helpers shared by keycloak-client's tests against the OpenID Connect test server: starting a server or
//! skipping the test, and capturing everything `tracing` writes (to search it for secrets).

#![allow(dead_code, unused_macros, unused_imports)] // each test binary uses a different part of this module

use std::sync::{Arc, Mutex};

/// The test server for `$config`, or `return` from the test (after the loud SKIPPED line
/// [`OidcServer::start`](keycloak_client::testing::OidcServer::start) prints) when it cannot run here.
macro_rules! server {
    ($name:expr, $config:expr) => {
        match keycloak_client::testing::OidcServer::start($name, &$config) {
            Some(s) => s,
            None => return,
        }
    };
}
pub(crate) use server;

/// Everything the tracing subscriber wrote, from every thread.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A TRACE-level subscriber writing into the returned [`Captured`], the default for this thread while the
/// guard lives.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}
