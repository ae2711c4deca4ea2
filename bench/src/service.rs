//! The service under test: the real release binary in its own process, on
//! a fresh ledger in a folder on the same disk as the repository, and what
//! the bench reads of its files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs;
use crate::shape::SECRET;

/// The release binary beside this one.
pub fn service_binary() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name("invitation-ledger")
}

/// The repository this bench was built from (the bench is its member
/// crate `bench/`).
pub fn repository() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_owned()
}

/// A new folder for one run's ledger: under `$BENCH_DIR` when set, else
/// `target/bench-tmp` in the repository, so the ledger is on the
/// repository's disk (as a deployment's is on a disk), never on a tmpfs
/// such as many systems' `/tmp`. Removed when dropped.
pub fn run_dir() -> anyhow::Result<tempfile::TempDir> {
    let base = std::env::var_os("BENCH_DIR").map_or_else(|| repository().join("target/bench-tmp"), PathBuf::from);
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("run-").tempdir_in(&base)?;
    let repo = std::fs::metadata(repository()).map(|m| m.dev()).ok();
    if repo.is_some() && std::fs::metadata(dir.path())?.dev() != repo.unwrap_or_default() {
        eprintln!("warning: {} is not on the repository's file system", dir.path().display());
    }
    Ok(dir)
}

/// Writes back whatever earlier work left dirty in the page cache (a ledger
/// just generated, the bodies file, the files of the scenario before), so
/// that the kernel's writeback of it does not land in this run's figures.
#[allow(unsafe_code)] // sync(2): no safe wrapper in std
pub fn quiesce() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// The service's log filter: `BENCH_LOG` when set (`info` is production's
/// default, and enables the per-webhook span), else warnings only, less the
/// expected one that no Lightspark API credentials are set.
pub fn service_log() -> String {
    std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn,invitation_ledger::service=error".to_owned())
}

/// The service, in its own process so its memory, CPU and I/O are its own.
pub struct Service {
    child: Child,
    pub addr: String,
    pub db: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Service {
    /// `serve` on a fresh ledger in a new [`run_dir`].
    pub fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = run_dir()?;
        let db = dir.path().join("ledger.db");
        Self::start_on(Some(dir), &db, extra, &[])
    }

    /// `serve` on an existing (or new) ledger `db` with extra env; `dir`
    /// (removed with the service) is where it lives when it is a throw-away.
    pub fn start_on(
        dir: Option<tempfile::TempDir>,
        db: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::start_at(dir, &format!("127.0.0.1:{port}"), db, extra, env)
    }

    /// [`start_on`](Self::start_on) listening on `addr` (a service started
    /// again where clients already send).
    pub fn start_at(
        dir: Option<tempfile::TempDir>,
        addr: &str,
        db: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        quiesce();
        let addr = addr.to_owned();
        let child = Command::new(service_binary())
            .arg("serve")
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("LEDGER_DB", db)
            .env("LISTEN_ADDR", &addr)
            .env("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)
            .env("LOG", service_log())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("starting {}: {e} (cargo build --release --bins first)", service_binary().display())
            })?;
        let svc = Service { child, addr, db: db.to_owned(), _dir: dir };
        svc.wait_healthy()?;
        Ok(svc)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The samples of one scrape of `/metrics`, by series (`name{labels}`).
    pub fn scrape(&self) -> anyhow::Result<std::collections::HashMap<String, f64>> {
        let text = reqwest::blocking::get(format!("http://{}/metrics", self.addr))?.text()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(series, value)| Some((series.to_owned(), value.trim().parse().ok()?)))
            .collect())
    }

    /// Waits for an answer to `GET /healthz`: the listener is bound before
    /// the ledger is opened, but requests are served only after.
    fn wait_healthy(&self) -> anyhow::Result<()> {
        use std::io::{Read, Write};
        let healthy = || -> std::io::Result<bool> {
            let mut s = std::net::TcpStream::connect(&self.addr)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer.starts_with("HTTP/1.1 200"))
        };
        for _ in 0..3_000 {
            if healthy().unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        anyhow::bail!("service did not start")
    }

    /// Waits until the projections have folded the whole ledger and the
    /// service's threads have gone quiet (less than 2 % of a core over
    /// 200 ms, at most 5 s), so that what a run caused, the fold and the
    /// checkpoints after the last request included, is in the counters.
    pub fn settle(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let files = Files::open(&self.db)?;
        while files.projected()? < files.rows()? {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "projections still behind after 120 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let quiet_since = Instant::now();
        let mut last = procfs::sample(self.pid()).map(|s| s.cpu_ticks);
        while quiet_since.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(200));
            let now = procfs::sample(self.pid()).map(|s| s.cpu_ticks);
            if let (Some(a), Some(b)) = (last, now) {
                if b.saturating_sub(a) < 1 {
                    break;
                }
            }
            last = now;
        }
        Ok(started.elapsed())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read-only views of a ledger and its projections while a service runs.
pub struct Files {
    db: PathBuf,
    ledger: rusqlite::Connection,
}

impl Files {
    pub fn open(db: &Path) -> anyhow::Result<Self> {
        Ok(Self { db: db.to_owned(), ledger: invitation_ledger::ledger::open_read_only(db)? })
    }

    /// Rows in the ledger (its head seq: seq is gapless).
    pub fn rows(&self) -> anyhow::Result<u64> {
        Ok(invitation_ledger::ledger::count(&self.ledger)?)
    }

    /// The last seq folded into the projections (0 before the first fold).
    pub fn projected(&self) -> anyhow::Result<u64> {
        match invitation_ledger::projection::store::open_read_only(&self.db) {
            Ok(conn) => Ok(invitation_ledger::projection::store::checkpoint(&conn)?),
            Err(invitation_ledger::projection::ProjectionError::Missing(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Sizes of the ledger's and the projections' files.
    pub fn sizes(&self) -> Sizes {
        let size = |suffix: &str| {
            let mut p = self.db.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p)).map(|m| m.len()).unwrap_or(0)
        };
        Sizes {
            ledger: size(""),
            ledger_wal: size("-wal"),
            projections: size("-projections"),
            projections_wal: size("-projections-wal"),
        }
    }
}

/// File sizes in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sizes {
    pub ledger: u64,
    pub ledger_wal: u64,
    pub projections: u64,
    pub projections_wal: u64,
}

/// What a child process did from start to exit: its last `/proc` sample
/// with threads, and exact totals read after it exited but before it was
/// reaped.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub wall: Duration,
    /// The last sample taken while it ran, with every thread ever seen at
    /// its last figures (up to 20 ms short of what it did).
    pub last: Option<procfs::ProcSample>,
    /// Read from the exited, not yet reaped process: CPU and bytes of all
    /// its threads.
    pub total: Option<procfs::ProcSample>,
    pub max_rss_kib: u64,
}

/// Runs `command` to its end, sampling its threads every 20 ms.
pub fn run_measured(command: Command) -> anyhow::Result<(Finished, String)> {
    run_watched(command, |_| {})
}

/// [`run_measured`], calling `watch` with the child's pid about every
/// millisecond while it runs.
pub fn run_watched(mut command: Command, mut watch: impl FnMut(u32)) -> anyhow::Result<(Finished, String)> {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Every thread seen, with its figures when last seen: threads
            // that end before the process keep what they had done by then.
            let mut last: Option<procfs::ProcSample> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match (procfs::sample(pid), last.as_mut()) {
                    (Some(s), Some(l)) if !s.threads.is_empty() => {
                        let mut threads = std::mem::take(&mut l.threads);
                        threads.extend(s.threads.clone());
                        *l = procfs::ProcSample { threads, ..s };
                    }
                    (Some(s), None) if !s.threads.is_empty() => last = Some(s),
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last
        })
    };
    while !exited(pid)? {
        watch(pid);
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = started.elapsed();
    let total = procfs::sample(pid);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = sampler.join().map_err(|_| anyhow::anyhow!("sampler panicked"))?;
    let (status, max_rss_kib) = reap(pid)?;
    // Reaped already: keep std from waiting again.
    std::mem::forget(child);
    let out = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))?;
    Ok((Finished { status, wall, last, total, max_rss_kib }, out))
}

/// Whether `pid` has exited, leaving it unreaped (`WNOWAIT`), so that its
/// `/proc` totals can still be read.
#[allow(unsafe_code)] // waitid(2): no safe wrapper in std
fn exited(pid: u32) -> anyhow::Result<bool> {
    loop {
        // SAFETY: waitid only writes into `info`, a plain C struct for which
        // all-zero bytes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT | libc::WNOHANG) };
        if rc == 0 {
            // WNOHANG: a pid of 0 means it is still running.
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    }
}

/// Reaps `pid`: its exit status and peak resident set (KiB).
#[allow(unsafe_code)] // wait4(2): no safe wrapper in std
fn reap(pid: u32) -> anyhow::Result<(std::process::ExitStatus, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: wait4 only writes into `status` and `usage`, plain C values
    // for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    anyhow::ensure!(rc == pid as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    Ok((std::process::ExitStatus::from_raw(status), usage.ru_maxrss as u64))
}
