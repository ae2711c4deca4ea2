//! One writing process per ledger, enforced by SQLite itself.
//!
//! The holder keeps an EXCLUSIVE transaction open on a small companion
//! database (`<ledger>-lock`). SQLite's file locks are released by the kernel
//! when the process dies, so a SIGKILLed service never leaves a stale lock,
//! and a second `serve`, a `rebuild` or a `reconcile --once` sees it at once.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::LedgerError;

/// Held for as long as this value lives.
pub struct InstanceLock {
    _conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for InstanceLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InstanceLock({})", self.path.display())
    }
}

/// The companion lock database of `ledger`.
pub fn lock_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

impl InstanceLock {
    /// Takes the lock without waiting.
    ///
    /// # Errors
    /// [`LedgerError::Busy`] when another process (or connection) holds it.
    pub fn acquire(ledger: &Path) -> Result<Self, LedgerError> {
        let path = lock_path(ledger);
        // The lock is taken before the ledger is opened, so on a first run
        // its folder may not exist yet.
        if let Some(parent) = ledger.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| LedgerError::Folder {
                path: parent.display().to_string(),
                source: std::sync::Arc::new(e),
            })?;
        }
        let take = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(std::time::Duration::ZERO)?;
            conn.execute_batch("BEGIN EXCLUSIVE")?;
            Ok(conn)
        };
        match take() {
            Ok(conn) => Ok(Self { _conn: conn, path }),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                Err(LedgerError::Busy(ledger.display().to_string()))
            }
            Err(e) => Err(LedgerError::from(e).on_file(&path.display().to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let first = InstanceLock::acquire(&db).unwrap();
        let second = InstanceLock::acquire(&db);
        assert!(matches!(second, Err(LedgerError::Busy(_))), "{second:?}");
        drop(first);
        assert!(InstanceLock::acquire(&db).is_ok());
    }
}
