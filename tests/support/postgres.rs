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

/// A PostgreSQL of one test's own (`scripts/postgres start`), for tests
/// that stop, start or restart the server under the service; removed
/// when dropped.
pub struct OwnServer {
    pub url: String,
    dir: String,
    port: String,
}

impl OwnServer {
    /// # Panics
    /// When the server cannot be started.
    pub fn start() -> Self {
        let out = std::process::Command::new("scripts/postgres").arg("start").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let dir = url.split("host=").nth(1).unwrap().split('&').next().unwrap().to_owned();
        let port = url.split("port=").nth(1).unwrap().split('&').next().unwrap().to_owned();
        Self { url, dir, port }
    }

    /// The server's folder: its data directory is `data` in it.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// `tool` of the installed PostgreSQL, run as the server's owner
    /// (`il_pg` when the tests run as root, as `scripts/postgres` does).
    pub fn as_owner(&self, tool: &str) -> std::process::Command {
        let bin =
            std::fs::read_dir("/usr/lib/postgresql").unwrap().next().unwrap().unwrap().path().join("bin").join(tool);
        let as_root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        if as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "il_pg", "--"]).arg(&bin);
            c
        } else {
            std::process::Command::new(&bin)
        }
    }

    /// Hands `path` (recursively) to the server's owner, as a restore of
    /// its files must; nothing to do when the tests do not run as root.
    pub fn give_to_owner(&self, path: &str) {
        let as_root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        if as_root {
            let out = std::process::Command::new("chown").args(["-R", "il_pg", path]).output().unwrap();
            assert!(out.status.success(), "chown {path}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    /// Runs `pg_ctl -D <data> <args>` as the server's owner.
    fn pg_ctl(&self, args: &[&str]) {
        let log = format!("{}/server.log", self.dir);
        let data = format!("{}/data", self.dir);
        let out = self.as_owner("pg_ctl").args(["-D", &data, "-l", &log, "-w"]).args(args).output().unwrap();
        assert!(out.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Adds `settings` to the server's configuration (an included file)
    /// and restarts it.
    pub fn configure(&self, settings: &str) {
        let file = format!("{}/extra.conf", self.dir);
        std::fs::write(&file, settings).unwrap();
        let conf = format!("{}/data/postgresql.conf", self.dir);
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!("\ninclude '{file}'\n"));
        std::fs::write(&conf, text).unwrap();
        self.pg_ctl(&["-m", "fast", "restart"]);
    }

    /// Stops the server the way a crash of its machine would look to
    /// clients (`-m immediate`: no goodbye to connections).
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// Starts a stopped server again on the same socket and port.
    pub fn start_again(&self) {
        let options = format!(
            "-k {} -p {} -c listen_addresses='' -c fsync=on -c synchronous_commit=on -c max_connections=300",
            self.dir, self.port
        );
        self.pg_ctl(&["-o", &options, "start"]);
    }

    /// Restarts the server at once, dropping every connection.
    pub fn restart_immediate(&self) {
        self.pg_ctl(&["-m", "immediate", "restart"]);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("scripts/postgres").args(["stop", &self.dir]).status();
    }
}
