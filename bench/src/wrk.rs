//! `wrk` as the load generator: installed from Debian when missing, fed
//! pre-signed bodies from a file through `scripts/bench/webhooks.lua`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::load::Outcome;
use crate::measure::LoadResult;
use crate::service::{self, repository};
use crate::shape::{self, Mix};

/// The Lua script that sends the bodies.
pub fn default_script() -> PathBuf {
    repository().join("scripts/bench/webhooks.lua")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().nth(1) == Some("0"))))
        .unwrap_or(false)
}

/// `wrk`'s version line, installing it from Debian (`apt-get install -y
/// wrk`, through sudo unless root) when it is missing.
pub fn ensure_wrk() -> anyhow::Result<String> {
    let version = || {
        Command::new("wrk")
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("wrk").trim().to_owned())
    };
    if let Some(v) = version() {
        return Ok(v);
    }
    eprintln!("wrk is missing: installing it from Debian (apt-get install -y wrk)");
    let apt = |args: &[&str]| {
        let mut c = if is_root() { Command::new("apt-get") } else { Command::new("sudo") };
        if !is_root() {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive").stdout(Stdio::null());
        c.status().map(|s| s.success()).unwrap_or(false)
    };
    if !apt(&["install", "-y", "wrk"]) {
        // A fresh machine may have no package lists yet.
        anyhow::ensure!(
            apt(&["update"]) && apt(&["install", "-y", "wrk"]),
            "could not install wrk (apt-get install -y wrk)"
        );
    }
    version().ok_or_else(|| anyhow::anyhow!("wrk installed but does not run"))
}

/// Writes `count` signed requests of `mix` to `path`, one a line:
/// `SIGNATURE BODY`. Returns the mean body size in bytes.
pub fn write_bodies(path: &Path, mix: &Mix, count: usize) -> anyhow::Result<f64> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut bytes = 0u64;
    let mut failed = None;
    shape::requests(mix, count, |s| {
        bytes += s.body.len() as u64;
        let line = out
            .write_all(s.signature.as_bytes())
            .and_then(|()| out.write_all(b" "))
            .and_then(|()| out.write_all(&s.body))
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = line {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    Ok(bytes as f64 / count.max(1) as f64)
}

/// How `wrk` is run.
pub struct WrkRun<'a> {
    pub threads: usize,
    pub connections: usize,
    pub duration: Duration,
    pub script: &'a Path,
    pub bodies: &'a Path,
}

/// Runs `wrk` against `addr` and reads the script's `wrk-result` line;
/// calls `started` when the gate opens (every thread has its bodies).
pub fn run(started: &mut dyn FnMut(), addr: &str, w: &WrkRun<'_>, version: &str) -> anyhow::Result<LoadResult> {
    let gate = w.bodies.with_file_name(format!("wrk-gate-{}", std::process::id()));
    let _ = std::fs::remove_file(&gate);
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", w.threads))
        .arg(format!("-c{}", w.connections))
        .arg(format!("-d{}s", w.duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(w.script)
        .arg(format!("http://{addr}"))
        .env("WEBHOOK_BODIES", w.bodies)
        .env("WEBHOOK_THREADS", w.threads.to_string())
        .env("WEBHOOK_GATE", &gate);
    let mut at_gate = None;
    let (finished, stdout) = service::run_watched(cmd, |pid| {
        if at_gate.is_none() && gate.exists() {
            started();
            at_gate = crate::procfs::sample(pid);
        }
    })?;
    let _ = std::fs::remove_file(&gate);
    anyhow::ensure!(finished.status.success(), "wrk failed ({}):\n{stdout}", finished.status);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrk-result "))
        .ok_or_else(|| anyhow::anyhow!("wrk printed no wrk-result line:\n{stdout}"))?;
    let field = |name: &str| -> f64 {
        line.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok()).unwrap_or(0.0)
    };
    let us = |name: &str| Duration::from_micros(field(name) as u64);
    let (connect, read, write, timeout) = (field("connect"), field("read"), field("write"), field("timeout"));
    let outcome = Outcome {
        requests: field("requests") as u64,
        elapsed: us("duration_us"),
        p50: us("p50_us"),
        p99: us("p99_us"),
        max: us("max_us"),
        non_2xx: field("status") as u64,
        socket_errors: (connect + read + write + timeout) as u64,
        socket_detail: format!("connect {connect}, read {read}, write {write}, timeout {timeout}"),
        wrapped: field("wrapped") as u64,
    };
    Ok(LoadResult {
        generator: format!(
            "{version}, -t{} -c{} -d{}s, {} with {} pre-signed bodies",
            w.threads,
            w.connections,
            w.duration.as_secs(),
            w.script.display(),
            field("bodies")
        ),
        generator_cpu: finished
            .total
            .map(|t| Duration::from_micros(t.cpu_ticks * 1_000_000 / crate::procfs::TICKS_PER_SECOND)),
        outcome,
    })
}
