//! The one integration-test binary, run once per backend: every test starts a
//! real komisi on the backend `KOMISI_TEST_BACKEND` names — `mysql` (the
//! default: MariaDB + Redis, a database and key prefix of its own) or `sqlite`
//! (the embedded mode, a file of its own) — and checks it over HTTP and in the
//! database. Tests of Redis itself (`journal`, stream loss, live entries) say
//! so and are skipped on `sqlite`. `sqlite` and `embedded`
//! drive the SQLite backend directly and `schema` compares the two schemas:
//! those run in either run.
mod adjustments;
mod attribution;
mod audit;
mod batching;
mod caps;
mod concurrency;
mod console;
mod currencies;
mod embedded;
mod explain;
mod faults;
mod fencing;
mod helpers;
mod hostile;
mod hot;
mod intake;
mod journal;
mod lifecycle;
mod months;
mod operator;
mod ops;
mod reconcile;
mod reports;
mod rewards;
mod rules;
mod scale;
mod schema;
mod simulations;
mod sqlite;
mod webhook_receiver;
mod webhooks;
