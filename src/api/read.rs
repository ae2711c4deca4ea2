//! The read API under `/v1`: invitations, the raw ledger, the audit.
//!
//! Handlers are thin: each runs one query function of the projection or the
//! ledger on a pooled read-only connection ([`ReadPool`]).

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use serde::Deserialize;
use warp::{Filter, Rejection, Reply};

use super::access::{read_access, Access};
use super::error::{reject, ApiError};
use super::metrics::ReadMeter;
use super::AppState;
use crate::projection::audit_page::{self, AuditPageRequest};
use crate::projection::query::{self, ListFilter};
use crate::projection::store;
use crate::projection::view::Fetching;

/// Largest page any list answers.
pub const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

/// Most read connections open at once. Each has its own page cache, and
/// with two cores more connections only add memory, not throughput.
const MAX_READERS: usize = 8;

/// Read-only connections, reused across requests: opening one per request
/// would cost more than the query.
pub struct ReadPool {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
    /// Where what each request's reads cost is counted.
    meter: ReadMeter,
}

impl ReadPool {
    pub fn new(path: &std::path::Path, meter: ReadMeter) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(MAX_READERS),
            meter,
        }
    }

    /// Runs `f`, a short indexed lookup (one invitation, one page of
    /// events), on a pooled connection right on the async worker. Such a
    /// lookup takes tens of microseconds; announcing it to tokio with
    /// `block_in_place` would cost more than the query (a thread hand-off
    /// per request: measured, `read` went from ~20k to ~31k requests/s on
    /// two cores without it).
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the database cannot be opened or `f` fails.
    pub async fn lookup<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.permits.acquire().await.map_err(|e| ApiError::Internal(e.into()))?;
        self.with_connection(f).map_err(ApiError::Internal)
    }

    /// Runs `f`, which may scan (a filtered list, the audit, the status
    /// page), on a pooled connection, telling tokio with `block_in_place` so
    /// other requests move to another worker meanwhile.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the database cannot be opened or `f` fails.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.permits.acquire().await.map_err(|e| ApiError::Internal(e.into()))?;
        let work = || self.with_connection(f);
        let multi = tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread;
        let out = if multi { tokio::task::block_in_place(work) } else { work() };
        out.map_err(ApiError::Internal)
    }

    fn with_connection<T>(&self, f: impl FnOnce(&Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let conn = self.idle.lock().expect("pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = store::open_read_only(&self.path)?;
                // Every statement stays prepared, so that its counters can
                // be read after the request (see `work_done`).
                c.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
                c
            }
        };
        work_done(&conn);
        let out = f(&conn);
        let work = work_done(&conn);
        self.meter.statements.inc_by(work.statements);
        self.meter.steps.inc_by(work.steps);
        self.meter.full_scan_steps.inc_by(work.full_scan_steps);
        self.meter.sorts.inc_by(work.sorts);
        self.idle.lock().expect("pool lock").push(conn);
        out
    }
}

/// Statements a read connection keeps prepared: more than the read side
/// has, so none is finalised (and its counters lost) between requests.
const STATEMENTS_KEPT: usize = 128;

/// What SQLite did for the statements run on a connection since the last
/// call, from its per-statement counters (reset as they are read).
#[derive(Debug, Clone, Copy, Default)]
struct ReadWork {
    statements: u64,
    steps: u64,
    full_scan_steps: u64,
    sorts: u64,
}

/// Sums, and resets, the counters of every statement prepared on `conn`.
/// Statements the read side runs are cached (`prepare_cached`), so they are
/// still prepared when the request is done.
#[allow(unsafe_code)] // sqlite3_next_stmt, sqlite3_stmt_status: rusqlite does not expose the cached statements
fn work_done(conn: &Connection) -> ReadWork {
    use rusqlite::ffi;
    let mut work = ReadWork::default();
    // SAFETY: the connection is owned by this thread for the call, so no
    // statement is prepared or finalised while the list is walked; the
    // handles are only passed back to SQLite, never dereferenced.
    unsafe {
        let db = conn.handle();
        let mut stmt = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        while !stmt.is_null() {
            let count = |op| ffi::sqlite3_stmt_status(stmt, op, 1).max(0) as u64;
            work.statements += count(ffi::SQLITE_STMTSTATUS_RUN);
            work.steps += count(ffi::SQLITE_STMTSTATUS_VM_STEP);
            work.full_scan_steps += count(ffi::SQLITE_STMTSTATUS_FULLSCAN_STEP);
            work.sorts += count(ffi::SQLITE_STMTSTATUS_SORT);
            stmt = ffi::sqlite3_next_stmt(db, stmt);
        }
    }
    work
}

/// Decodes `%XX` escapes in a path segment or query value, and `+` as a
/// space when `plus` (form encoding). Malformed escapes are kept as they are.
pub(crate) fn percent_decode(s: &str, plus: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let digit = |x: u8| (x as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (digit(bytes[i + 1]), digit(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    payout_state: Option<String>,
    inviter_uma: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    inviter_uma: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

fn page_size(limit: Option<usize>) -> Result<usize, Rejection> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(0) => Err(reject(ApiError::BadRequest("limit must be at least 1".into()))),
        Some(n) if n > MAX_PAGE => Err(reject(ApiError::BadRequest(format!("limit must be at most {MAX_PAGE}")))),
        Some(n) => Ok(n),
    }
}

/// Whether the ledger holds events of the invitation `id_or_code` names (by
/// id, or a Grid code): an invitation the projections do not know yet, but
/// will, is not "unknown".
fn ledger_knows(c: &Connection, id_or_code: &str) -> anyhow::Result<bool> {
    use crate::vocab::StreamId;
    for stream in [StreamId::new(id_or_code), StreamId::grid(id_or_code)] {
        if crate::ledger::stream_version(c, stream.as_str())? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let auth = read_access(Access::new(state.config.read_api_token.as_ref()));
    let pool = state.reads.clone();
    let fetching = Fetching::new(|s| state.config.reconcile.fetch_configured(s));

    let p = pool.clone();
    let st = state.clone();
    let one =
        warp::path!("v1" / "invitations" / String).and(warp::get()).and(auth.clone()).and_then(move |raw: String| {
            let p = p.clone();
            let st = st.clone();
            async move {
                st.fresh().map_err(reject)?;
                let id = percent_decode(&raw, false);
                let lookup = id.clone();
                let found = p
                    .lookup(move |c| {
                        Ok(match query::invitation(c, &lookup, fetching)? {
                            Some(v) => Ok(v),
                            None => Err(ledger_knows(c, &lookup)?),
                        })
                    })
                    .await
                    .map_err(reject)?;
                match found {
                    Ok(v) => Ok::<_, Rejection>(warp::reply::json(&v).into_response()),
                    Err(true) => Err(reject(ApiError::CatchingUp(format!(
                        "the events of {id:?} are in the ledger and being folded into its projection; ask again shortly"
                    )))),
                    Err(false) => Err(reject(ApiError::NotFound(format!("no invitation with id or code {id:?}")))),
                }
            }
        });

    let p = pool.clone();
    let st = state.clone();
    let list =
        warp::path!("v1" / "invitations").and(warp::get()).and(auth.clone()).and(warp::query::<ListQuery>()).and_then(
            move |q: ListQuery| {
                let p = p.clone();
                let st = st.clone();
                async move {
                    st.fresh().map_err(reject)?;
                    let filter = ListFilter {
                        status: q.status.filter(|s| !s.is_empty()),
                        payout_state: q.payout_state.filter(|s| !s.is_empty()),
                        inviter_uma: q.inviter_uma.filter(|s| !s.is_empty()),
                        after: q.after.filter(|s| !s.is_empty()),
                        limit: page_size(q.limit)?,
                    };
                    let page = p.run(move |c| Ok(query::invitations(c, &filter, fetching)?)).await.map_err(reject)?;
                    Ok::<_, Rejection>(warp::reply::json(&page).into_response())
                }
            },
        );

    let p = pool.clone();
    let st = state.clone();
    let horizon = state.config.reconcile.idempotency_window;
    let audit = warp::path!("v1" / "audit" / "incentives")
        .and(warp::get())
        .and(auth.clone())
        .and(warp::query::<AuditQuery>())
        .and_then(move |q: AuditQuery| {
            let p = p.clone();
            let st = st.clone();
            async move {
                st.fresh().map_err(reject)?;
                let req = AuditPageRequest {
                    inviter_uma: q.inviter_uma.filter(|s| !s.is_empty()),
                    after: q.after.filter(|s| !s.is_empty()),
                    limit: page_size(q.limit)?,
                };
                let a = p
                    .run(move |c| Ok(audit_page::page(c, &req, chrono::Utc::now(), horizon)?))
                    .await
                    .map_err(reject)?;
                Ok::<_, Rejection>(warp::reply::json(&a).into_response())
            }
        });

    let p = pool;
    let events = warp::path!("v1" / "ledger" / "events")
        .and(warp::get())
        .and(auth.clone())
        .and(warp::query::<EventsQuery>())
        .and_then(move |q: EventsQuery| {
            let p = p.clone();
            async move {
                let limit = page_size(q.limit)?;
                let after = q.after.unwrap_or(0);
                let page = p.run(move |c| Ok(query::ledger_events(c, after, limit)?)).await.map_err(reject)?;
                Ok::<_, Rejection>(warp::reply::json(&page).into_response())
            }
        });

    let p = state.reads.clone();
    let head = warp::path!("v1" / "ledger" / "head").and(warp::get()).and(auth).and_then(move || {
        let p = p.clone();
        async move {
            let head = p.lookup(|c| Ok(query::ledger_head(c)?)).await.map_err(reject)?;
            Ok::<_, Rejection>(warp::reply::json(&head).into_response())
        }
    });

    one.or(list).unify().or(events).unify().or(head).unify().or(audit).unify()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_escapes_in_ids_are_decoded() {
        assert_eq!(percent_decode("UmaInvitation%3A123", false), "UmaInvitation:123");
        assert_eq!(percent_decode("%24alice%40x", false), "$alice@x");
        assert_eq!(percent_decode("plain", false), "plain");
        assert_eq!(percent_decode("bad%zz%4", false), "bad%zz%4");
        assert_eq!(percent_decode("%é1", false), "%é1");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }
}
