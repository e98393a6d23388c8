//! phoneproof: set a phone number, send it an SMS code, verify it — ZITADEL-compatible.
pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod routes;
pub mod sms;
pub mod startup;
pub mod store;
pub mod telemetry;
