// Rebuild when a migration changes: `sqlx::migrate!` embeds migrations/mysql
// and migrations/sqlite at compile time, and cargo does not track them itself.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
