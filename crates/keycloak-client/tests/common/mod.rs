//! Helpers shared by keycloak-client's tests against the OpenID Connect test server: starting a server
//! (`keybound_test_support::oidc`) or skipping the test.

#![allow(dead_code, unused_macros, unused_imports)] // each test binary uses a different part of this module

/// The test server for `$config`, or `return` from the test (after the loud SKIPPED line
/// [`OidcServer::start`](keybound_test_support::oidc::OidcServer::start) prints) when it cannot run here.
macro_rules! server {
    ($name:expr, $config:expr) => {
        match keybound_test_support::oidc::OidcServer::start($name, &$config) {
            Some(s) => s,
            None => return,
        }
    };
}
pub(crate) use server;
