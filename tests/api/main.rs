//! The one integration-test binary: every test starts a real komisi against
//! MariaDB and Redis, with its own database and key prefix; `sqlite` drives
//! the engine on the embedded SQLite backend (a file of its own per test),
//! and `schema` checks the two backends' schemas against each other.
mod batching;
mod concurrency;
mod embedded;
mod faults;
mod helpers;
mod hot;
mod intake;
mod journal;
mod lifecycle;
mod operator;
mod ops;
mod rules;
mod schema;
mod sqlite;
mod sqlite_journal;
