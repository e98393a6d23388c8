//! API tests: the real application on a random port, a fresh SQLite file each, real HTTP.
mod auth;
mod binary;
mod crash;
mod delivery;
mod errors;
mod flow;
mod helpers;
mod limits;
mod logging;
mod metrics;
mod openapi;
mod postgres;
mod races;
mod replay;
mod replicas;
mod throttling;
