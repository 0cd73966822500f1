//! komisi: an event-driven affiliate-commission and buyer-reward engine.
//! Data flows one way: http → actors → domain (pure) → store.
pub mod actors;
pub mod app;
pub mod apply;
pub mod coalesce;
pub mod config;
pub mod domain;
pub mod event;
pub mod faults;
pub mod http;
pub mod intake;
pub mod journal;
pub mod metrics;
pub mod retry;
pub mod store;
