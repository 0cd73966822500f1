//! The two schemas stay in step: migrations/mysql on a fresh MariaDB database
//! and migrations/sqlite on a fresh SQLite file hold the same tables, the
//! same columns with the same nullability and a corresponding type, and the
//! same keys and indexes.
use crate::sqlite::TempDb;
use komisi::store::sql::SqlStore;
use komisi::store::sqlite::SqliteStore;
use komisi::store::Backend;
use sqlx::mysql::MySqlPool;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::Arc;

/// column → (nullable, type class)
type Columns = BTreeMap<String, (bool, String)>;
/// index name (`PRIMARY` for the primary key) → (unique, columns in order)
type Indexes = BTreeMap<String, (bool, Vec<String>)>;

#[derive(Debug, Default, PartialEq)]
struct Table {
    columns: Columns,
    indexes: Indexes,
}

fn mysql_base() -> String {
    std::env::var("KOMISI_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// What SQLite holds for a MySQL column type: money and times are exact
/// text, strings text, integers INTEGER, binary BLOB.
fn mysql_class(data_type: &str) -> &'static str {
    match data_type {
        "decimal" => "TEXT (money)",
        "datetime" | "timestamp" => "TEXT (time)",
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" => "INTEGER",
        "char" | "varchar" => "TEXT (string)",
        "tinytext" | "text" | "mediumtext" | "longtext" => "TEXT (text)",
        "binary" | "varbinary" | "blob" | "longblob" => "BLOB",
        _ => "unmapped",
    }
}

/// The SQLite side's class is the declared type; TEXT fits every text class.
fn sqlite_matches(declared: &str, class: &str) -> bool {
    match declared.to_ascii_uppercase().as_str() {
        "TEXT" => class.starts_with("TEXT"),
        other => other == class,
    }
}

/// Bookkeeping, and the journal's fences (several instances: production only).
fn ignored(table: &str) -> bool {
    table == "_sqlx_migrations" || table.starts_with("sqlite_") || table.starts_with("journal_")
}

async fn mysql_schema(pool: &MySqlPool, db: &str) -> BTreeMap<String, Table> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let columns = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR) AS t, CAST(COLUMN_NAME AS CHAR) AS c, CAST(IS_NULLABLE AS CHAR) AS n, \
         CAST(DATA_TYPE AS CHAR) AS ty FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?",
    )
    .bind(db)
    .fetch_all(pool)
    .await
    .expect("MySQL columns");
    for r in columns {
        let table: String = r.get("t");
        if ignored(&table) {
            continue;
        }
        let ty: String = r.get("ty");
        tables
            .entry(table)
            .or_default()
            .columns
            .insert(r.get("c"), (r.get::<String, _>("n") == "YES", mysql_class(&ty.to_ascii_lowercase()).to_owned()));
    }
    let indexes = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR) AS t, CAST(INDEX_NAME AS CHAR) AS i, CAST(NON_UNIQUE AS SIGNED) AS nu, \
         CAST(COLUMN_NAME AS CHAR) AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
         ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
    )
    .bind(db)
    .fetch_all(pool)
    .await
    .expect("MySQL indexes");
    for r in indexes {
        let table: String = r.get("t");
        if ignored(&table) {
            continue;
        }
        let slot = tables.entry(table).or_default().indexes.entry(r.get("i")).or_insert((false, Vec::new()));
        slot.0 = r.get::<i64, _>("nu") == 0;
        slot.1.push(r.get("c"));
    }
    tables
}

/// The SQLite schema, with each column's class taken from the MySQL column
/// of the same name when the declared type fits it (so a mismatch shows as
/// a difference in the class).
async fn sqlite_schema(pool: &SqlitePool, mysql: &BTreeMap<String, Table>) -> (BTreeMap<String, Table>, Vec<String>) {
    let mut tables = BTreeMap::new();
    let mut not_strict = Vec::new();
    let names: Vec<(String, i64)> =
        sqlx::query("SELECT name, strict FROM pragma_table_list WHERE schema = 'main' AND type = 'table'")
            .fetch_all(pool)
            .await
            .expect("SQLite tables")
            .iter()
            .map(|r| (r.get("name"), r.get("strict")))
            .collect();
    for (name, strict) in names {
        if ignored(&name) {
            continue;
        }
        if strict != 1 {
            not_strict.push(name.clone());
        }
        let mut table = Table::default();
        let mut primary: Vec<(i64, String)> = Vec::new();
        for r in sqlx::query("SELECT name, type, \"notnull\" AS nn, pk FROM pragma_table_info(?)")
            .bind(&name)
            .fetch_all(pool)
            .await
            .expect("SQLite columns")
        {
            let column: String = r.get("name");
            let declared: String = r.get("type");
            let mysql_class =
                mysql.get(&name).and_then(|t| t.columns.get(&column)).map_or("unmapped", |(_, class)| class.as_str());
            let class = if sqlite_matches(&declared, mysql_class) {
                mysql_class.to_owned()
            } else {
                format!("{declared} (declared)")
            };
            let pk: i64 = r.get("pk");
            if pk > 0 {
                primary.push((pk, column.clone()));
            }
            table.columns.insert(column, (r.get::<i64, _>("nn") == 0, class));
        }
        primary.sort();
        if !primary.is_empty() {
            table.indexes.insert("PRIMARY".into(), (true, primary.into_iter().map(|(_, c)| c).collect()));
        }
        for r in sqlx::query("SELECT name, \"unique\" AS u, origin FROM pragma_index_list(?)")
            .bind(&name)
            .fetch_all(pool)
            .await
            .expect("SQLite indexes")
        {
            let origin: String = r.get("origin");
            if origin == "pk" {
                continue; // the primary key, read from the columns above
            }
            let index: String = r.get("name");
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                .bind(&index)
                .fetch_all(pool)
                .await
                .expect("SQLite index columns");
            table.indexes.insert(index, (r.get::<i64, _>("u") == 1, columns));
        }
        tables.insert(name, table);
    }
    (tables, not_strict)
}

/// The one place the keys differ on purpose (migration 0039): MySQL stores
/// the ledger clustered by affiliate, keyed (affiliate_id, id) with `id`
/// unique, where SQLite keeps its rowid `id` and the index (affiliate_id, id).
/// Maps the MySQL side onto SQLite's, only when it is exactly that.
fn as_sqlite_keys(name: &str, m: &Table) -> Table {
    let mut t = Table { columns: m.columns.clone(), indexes: m.indexes.clone() };
    let by_affiliate = (true, vec!["affiliate_id".to_owned(), "id".to_owned()]);
    if name == "ledger_entries"
        && t.indexes.get("PRIMARY") == Some(&by_affiliate)
        && t.indexes.get("uq_ledger_id") == Some(&(true, vec!["id".to_owned()]))
        && !t.indexes.contains_key("ix_ledger_affiliate")
    {
        t.indexes.remove("uq_ledger_id");
        t.indexes.insert("PRIMARY".into(), (true, vec!["id".into()]));
        t.indexes.insert("ix_ledger_affiliate".into(), (false, by_affiliate.1));
    }
    t
}

/// Every difference, table by table and column by column.
fn differences(mysql: &BTreeMap<String, Table>, sqlite: &BTreeMap<String, Table>) -> Vec<String> {
    let mut out = Vec::new();
    let mysql: BTreeMap<String, Table> = mysql.iter().map(|(n, t)| (n.clone(), as_sqlite_keys(n, t))).collect();
    let mysql = &mysql;
    for name in mysql.keys().chain(sqlite.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (Some(m), Some(s)) = (mysql.get(name), sqlite.get(name)) else {
            out.push(format!("table {name}: only in {}", if mysql.contains_key(name) { "MySQL" } else { "SQLite" }));
            continue;
        };
        for column in m.columns.keys().chain(s.columns.keys()).collect::<std::collections::BTreeSet<_>>() {
            match (m.columns.get(column), s.columns.get(column)) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => out.push(format!("{name}.{column}: MySQL {a:?}, SQLite {b:?} (nullable, type class)")),
            }
        }
        for index in m.indexes.keys().chain(s.indexes.keys()).collect::<std::collections::BTreeSet<_>>() {
            match (m.indexes.get(index), s.indexes.get(index)) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => out.push(format!("{name} index {index}: MySQL {a:?}, SQLite {b:?} (unique, columns)")),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mysql_and_sqlite_schemas_match_table_by_table() {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let db_name = format!("komisi_t_schema_{}", &id[id.len() - 16..]);
    let admin = MySqlPool::connect(&mysql_base()).await.expect("MariaDB reachable (KOMISI_TEST_MYSQL_URL)");
    sqlx::query(&format!("CREATE DATABASE `{db_name}`")).execute(&admin).await.expect("create test database");

    let name = db_name.clone();
    let compared = async move {
        let pool = MySqlPool::connect(&format!("{}/{name}", mysql_base())).await.expect("connect");
        sqlx::migrate!("./migrations/mysql").run(&pool).await.expect("MySQL migrations");
        let mysql = mysql_schema(&pool, &name).await;
        pool.close().await;

        let file = TempDb::new("schema");
        let store = SqliteStore::connect(&file.url(), 1).await.expect("SQLite file");
        SqlStore::new(Arc::new(store.clone())).migrate().await.expect("SQLite migrations");
        let (sqlite, not_strict) = sqlite_schema(store.writer(), &mysql).await;
        let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM program_versions")
            .fetch_one(store.writer())
            .await
            .expect("program");
        (mysql, sqlite, not_strict, version)
    };
    // The database is dropped whatever the comparison found.
    let compared = tokio::spawn(compared).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS `{db_name}`")).execute(&admin).await.expect("drop test database");
    let (mysql, sqlite, not_strict, version) = compared.expect("schemas read");

    assert!(mysql.len() >= 13, "MySQL tables: {:?}", mysql.keys());
    assert!(mysql.values().all(|t| t.columns.values().all(|(_, class)| class != "unmapped")), "{mysql:#?}");
    let diff = differences(&mysql, &sqlite);
    assert!(diff.is_empty(), "the schemas differ:\n{}", diff.join("\n"));
    assert!(not_strict.is_empty(), "SQLite tables not STRICT: {not_strict:?}");
    assert_eq!(version, 1, "migrate() stores program version 1");
}
