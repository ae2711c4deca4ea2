//! The real `invitation-ledger` binary: `serve` as a child process that
//! can be SIGKILLed, and the CLI commands run to completion.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::secret::SECRET;

/// The served binary's log filter: warnings, and the projector's every
/// failed retry (debug), so that a test failing because derived state
/// never recovered shows why in its output.
const LOG: &str = "warn,invitation_ledger::projection::projector=debug";

pub const BIN: &str = env!("CARGO_BIN_EXE_invitation-ledger");

/// A spawned `serve`, killed on drop.
pub struct ServeProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ServeProcess {
    /// Starts `serve` on a free loopback port and waits until `/healthz` answers.
    pub fn start(db: &Path, extra_env: &[(&str, &str)]) -> Self {
        Self::start_logging(db, extra_env, None)
    }

    /// [`start`](Self::start), its log (stderr) written to `log` when given.
    pub fn start_logging(db: &Path, extra_env: &[(&str, &str)], log: Option<&Path>) -> Self {
        Self::start_with_stderr(db, extra_env, &|| match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        })
    }

    /// [`start`](Self::start), its log (stderr) sent where `stderr` says
    /// (made anew for each try on another port).
    pub fn start_with_stderr(db: &Path, extra_env: &[(&str, &str)], stderr: &dyn Fn() -> Stdio) -> Self {
        let p = Self::start_answering(db, extra_env, stderr);
        // Webhooks are accepted while the projections catch up since the
        // start; reads answer 503 until then. Tests read at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while p.raw_get("/readyz").contains("\"catching_up\"") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    /// [`start`](Self::start) without waiting for the projections to catch
    /// up: it returns as soon as the service answers `/healthz`.
    pub fn start_answering(db: &Path, extra_env: &[(&str, &str)], stderr: &dyn Fn() -> Stdio) -> Self {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut cmd = Command::new(BIN);
            cmd.arg("serve")
                .env("LEDGER_DB", db)
                .env("LISTEN_ADDR", addr.to_string())
                .env("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)
                .env("LOG", LOG)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr());
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn invitation-ledger");
            let mut p = ServeProcess { child, addr };
            if p.wait_healthy(Duration::from_secs(20)) {
                return p;
            }
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        panic!("invitation-ledger serve did not start");
    }

    /// [`start`](Self::start) on a blocking thread, so that fakes served by
    /// this test's runtime keep answering while the child starts.
    pub async fn spawn(db: PathBuf, env: Vec<(&'static str, String)>) -> Self {
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ServeProcess::start(&db, &env)
        })
        .await
        .expect("start the service")
    }

    fn wait_healthy(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.raw_get("/healthz").starts_with("HTTP/1.1 200") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `GET path` over a fresh connection: the whole answer, head and
    /// body, or empty when the service did not answer.
    pub fn raw_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut out = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
            let _ = s.read_to_string(&mut out);
        }
        out
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// [`kill`](Self::kill) on a blocking thread.
    pub async fn kill_async(self) {
        tokio::task::spawn_blocking(move || self.kill()).await.expect("SIGKILL the service");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion with `args` and the given environment.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("LOG", "warn").stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run invitation-ledger")
}

/// Runs the binary like [`run`], on a blocking thread so that fakes served
/// by this test's runtime keep answering the child process.
pub async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&args, &env)
    })
    .await
    .expect("binary runner")
}
