//! A database of its own for each test, on the PostgreSQL that
//! `scripts/test` starts (its URL in `TEST_DATABASE_URL`). A test that
//! needs PostgreSQL and has none fails, saying so; it never skips.

/// The admin URL of the test server.
///
/// # Panics
/// When `TEST_DATABASE_URL` is not set.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "this test needs PostgreSQL: run it through scripts/test (which starts a throw-away server), or set \
             TEST_DATABASE_URL to a server where it may create databases"
        )
    })
}

/// Creates an empty database and answers its URL.
pub async fn fresh_database() -> String {
    let admin = server_url();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at TEST_DATABASE_URL: {e}"));
    tokio::spawn(connection);
    let name = format!("il_test_{:016x}", rand_u64());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a test database");
    with_database(&admin, &name)
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    // postgresql://user@/postgres?host=…  →  postgresql://user@/<name>?host=…
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(at) if at > "postgresql://".len() => &base[..at],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish()
}
