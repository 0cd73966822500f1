//! The one integration-test binary: every test starts a real komisi against
//! MariaDB and Redis, with its own database and key prefix.
mod batching;
mod concurrency;
mod faults;
mod helpers;
mod hot;
mod intake;
mod journal;
mod lifecycle;
mod operator;
mod ops;
mod rules;
mod sqlite_journal;
