//! phoneproof: set a phone number, send it an SMS code, verify it — ZITADEL-compatible.
pub mod app;
pub mod auth;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod faults;
pub mod grpc;
pub mod i18n;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod routes;
pub mod sealed_sms;
pub mod secrets;
pub mod server;
pub mod sms;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;

/// An error and its sources on one line (`a: b: c`), for the one log line a failure gets.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
