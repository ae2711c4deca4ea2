//! The real binary's log as a service manager or a log shipper reads it:
//! through a pipe (not a terminal), to its end once the service stopped;
//! and SIGTERM, which is how such a manager stops it.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::binary::ServeProcess;

/// Sends SIGTERM to the child (no libc here: the `kill` command).
pub fn sigterm(server: &ServeProcess) {
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

/// `serve` on the ledger `db` with its stderr a pipe, and a thread reading
/// that pipe to its end (so a full pipe never blocks the service); [`stop`]
/// joins it.
pub fn serve_piped(db: &Path, env: &[(&str, &str)]) -> (ServeProcess, JoinHandle<String>) {
    let mut server = ServeProcess::start_with_stderr(db, env, &Stdio::piped);
    let mut pipe = server.child.stderr.take().expect("stderr is a pipe");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).expect("read the log");
        text
    });
    (server, log)
}

/// Stops the service with SIGTERM, waits for it to exit, and returns its
/// whole log.
pub fn stop(mut server: ServeProcess, log: JoinHandle<String>) -> String {
    sigterm(&server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "the service did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    log.join().expect("the log reader")
}
