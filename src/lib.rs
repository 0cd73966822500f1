//! komisi: an event-driven affiliate-commission and buyer-reward engine.
//! Data flows one way: `http → engine → (domain, store, journal)` and
//! `actors → engine`; `domain` holds every rule as pure functions, `store`
//! only SQL behind the backend seam, `engine` the use cases.
pub mod actors;
pub mod app;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod store;
