//! What the kernel counts for a process and each of its threads, read from
//! `/proc`: CPU time (`stat`: utime + stime), bytes written (`io`:
//! `write_bytes`, counted when a page of the page cache is dirtied, so
//! writeback later is still the writer's), thread names (`comm`), peak
//! resident memory (`status`: VmHWM); and the whole machine's CPU
//! (`/proc/stat`), to tell how busy the rest of it was during a run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on Linux).
pub const TICKS_PER_SECOND: u64 = 100;

/// One thread's counters.
#[derive(Clone, Debug, Default)]
pub struct ThreadSample {
    pub comm: String,
    pub cpu_ticks: u64,
    pub write_bytes: u64,
    /// Bytes passed to write(2) and its kin (files and sockets alike).
    pub wchar: u64,
    /// Bytes returned by read(2) and its kin, from the page cache or not.
    pub rchar: u64,
}

/// A process's counters at one moment.
#[derive(Clone, Debug)]
pub struct ProcSample {
    pub pid: u32,
    pub at: Instant,
    /// utime + stime of the whole process, exited threads included.
    pub cpu_ticks: u64,
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
    pub wchar: u64,
    pub rchar: u64,
    pub threads: BTreeMap<u32, ThreadSample>,
}

/// `(comm, utime + stime)` from a `stat` file's text.
fn parse_stat(text: &str) -> Option<(String, u64)> {
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After the comm: state(3) ... utime(14) stime(15), counted from 1.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn io_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// Reads `/proc/<pid>` and every `/proc/<pid>/task/<tid>`; `None` once the
/// process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let at = Instant::now();
    let (_, cpu_ticks) = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let mut threads = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Some((comm, ticks)) =
                std::fs::read_to_string(entry.path().join("stat")).ok().as_deref().and_then(parse_stat)
            else {
                continue;
            };
            let io = std::fs::read_to_string(entry.path().join("io")).unwrap_or_default();
            let field = |name| io_field(&io, name).unwrap_or(0);
            threads.insert(
                tid,
                ThreadSample {
                    comm,
                    cpu_ticks: ticks,
                    write_bytes: field("write_bytes"),
                    wchar: field("wchar"),
                    rchar: field("rchar"),
                },
            );
        }
    }
    Some(ProcSample {
        pid,
        at,
        cpu_ticks,
        write_bytes: io_field(&io, "write_bytes").unwrap_or(0),
        cancelled_write_bytes: io_field(&io, "cancelled_write_bytes").unwrap_or(0),
        wchar: io_field(&io, "wchar").unwrap_or(0),
        rchar: io_field(&io, "rchar").unwrap_or(0),
        threads,
    })
}

/// The group a thread is counted in: its name, with tokio's and the
/// truncated checkpointer's spelled out.
pub fn group_of(comm: &str) -> String {
    match comm {
        // tokio names its workers (and blocking threads) so, by version.
        "tokio-runtime-w" | "tokio-rt-worker" => "tokio workers (HTTP)".to_owned(),
        // comm keeps 15 bytes.
        "ledger-checkpoi" => "ledger-checkpoint".to_owned(),
        other => other.to_owned(),
    }
}

/// CPU time and bytes written by one group of threads between two samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupDelta {
    pub group: String,
    pub cpu: Duration,
    pub write_bytes: u64,
    pub wchar: u64,
    pub rchar: u64,
}

/// What a process did between `before` and `after`: totals, and per
/// thread group sorted by CPU (largest first). Threads that ended between
/// the samples are in the totals only, as `exited or unnamed`.
#[derive(Clone, Debug)]
pub struct ProcDelta {
    pub wall: Duration,
    pub cpu: Duration,
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
    pub wchar: u64,
    pub rchar: u64,
    pub groups: Vec<GroupDelta>,
}

fn ticks(t: u64) -> Duration {
    Duration::from_micros(t * 1_000_000 / TICKS_PER_SECOND)
}

pub fn delta(before: &ProcSample, after: &ProcSample) -> ProcDelta {
    // [cpu ticks, write_bytes, wchar, rchar] per group
    let mut groups: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    let figures = |t: &ThreadSample| [t.cpu_ticks, t.write_bytes, t.wchar, t.rchar];
    for (tid, t) in &after.threads {
        let earlier = before.threads.get(tid).filter(|b| b.comm == t.comm).map_or([0; 4], figures);
        let name = if *tid == after.pid { "main thread".to_owned() } else { group_of(&t.comm) };
        let g = groups.entry(name).or_default();
        for (i, (now, then)) in figures(t).iter().zip(earlier).enumerate() {
            g[i] += now.saturating_sub(then);
        }
    }
    let total = [
        after.cpu_ticks.saturating_sub(before.cpu_ticks),
        after.write_bytes.saturating_sub(before.write_bytes),
        after.wchar.saturating_sub(before.wchar),
        after.rchar.saturating_sub(before.rchar),
    ];
    let mut named = [0u64; 4];
    for g in groups.values() {
        for i in 0..4 {
            named[i] += g[i];
        }
    }
    let rest: Vec<u64> = (0..4).map(|i| total[i].saturating_sub(named[i])).collect();
    if rest.iter().any(|r| *r > 0) {
        let g = groups.entry("exited or unnamed".to_owned()).or_default();
        for i in 0..4 {
            g[i] += rest[i];
        }
    }
    let mut groups: Vec<GroupDelta> = groups
        .into_iter()
        .filter(|(_, g)| g.iter().any(|v| *v > 0))
        .map(|(group, g)| GroupDelta { group, cpu: ticks(g[0]), write_bytes: g[1], wchar: g[2], rchar: g[3] })
        .collect();
    groups.sort_by(|a, b| b.cpu.cmp(&a.cpu).then(b.write_bytes.cmp(&a.write_bytes)));
    ProcDelta {
        wall: after.at.duration_since(before.at),
        cpu: ticks(total[0]),
        write_bytes: total[1],
        cancelled_write_bytes: after.cancelled_write_bytes.saturating_sub(before.cancelled_write_bytes),
        wchar: total[2],
        rchar: total[3],
        groups,
    }
}

/// Peak resident set so far (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The machine's CPU counters (`/proc/stat`, first line), in ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct MachineSample {
    /// user + nice + system + irq + softirq: time some program or the
    /// kernel ran.
    pub busy: u64,
    pub iowait: u64,
    /// Time the hypervisor gave this machine's CPUs to someone else.
    pub steal: u64,
    pub total: u64,
    pub cpus: u32,
}

pub fn machine() -> MachineSample {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else { return MachineSample::default() };
    let cpus = text.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count() as u32;
    let Some(line) = text.lines().next() else { return MachineSample::default() };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is inside user)
    MachineSample {
        busy: at(0) + at(1) + at(2) + at(5) + at(6),
        iowait: at(4),
        steal: at(7),
        total: (0..8).map(at).sum(),
        cpus,
    }
}

/// The one-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// How busy the machine was between two samples, in cores.
pub struct MachineDelta {
    pub busy_cores: f64,
    pub iowait_cores: f64,
    pub steal_share: f64,
    pub cpus: u32,
}

pub fn machine_delta(before: &MachineSample, after: &MachineSample, wall: Duration) -> MachineDelta {
    let secs = wall.as_secs_f64().max(1e-9);
    let cores = |t: u64| t as f64 / TICKS_PER_SECOND as f64 / secs;
    let total = after.total.saturating_sub(before.total).max(1) as f64;
    MachineDelta {
        busy_cores: cores(after.busy.saturating_sub(before.busy)),
        iowait_cores: cores(after.iowait.saturating_sub(before.iowait)),
        steal_share: after.steal.saturating_sub(before.steal) as f64 / total,
        cpus: after.cpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "4242 (tokio (x) w) S 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_stat(line), Some(("tokio (x) w".to_owned(), 168)));
        assert_eq!(io_field("rchar: 1\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n", "write_bytes"), Some(8192));
    }

    #[test]
    fn this_process_reads() {
        let s = sample(std::process::id()).unwrap();
        assert!(!s.threads.is_empty());
        assert!(peak_rss_kib(std::process::id()).unwrap() > 0);
        assert!(machine().cpus >= 1);
    }

    #[test]
    fn deltas_group_threads_and_keep_what_exited() {
        let t =
            |comm: &str, cpu, w| ThreadSample { comm: comm.into(), cpu_ticks: cpu, write_bytes: w, wchar: w, rchar: 0 };
        let at = Instant::now();
        let before = ProcSample {
            pid: 100,
            at,
            cpu_ticks: 100,
            write_bytes: 0,
            cancelled_write_bytes: 0,
            wchar: 0,
            rchar: 0,
            threads: [(1, t("ledger-writer", 50, 0)), (2, t("tokio-runtime-w", 10, 0)), (9, t("gone", 40, 0))].into(),
        };
        let after = ProcSample {
            pid: 100,
            at,
            cpu_ticks: 400,
            write_bytes: 10_000,
            cancelled_write_bytes: 0,
            wchar: 10_000,
            rchar: 0,
            threads: [
                (1, t("ledger-writer", 150, 8_000)),
                (2, t("tokio-runtime-w", 60, 0)),
                (3, t("tokio-runtime-w", 70, 0)),
            ]
            .into(),
        };
        let d = delta(&before, &after);
        assert_eq!(d.cpu, Duration::from_secs(3));
        let by: BTreeMap<_, _> = d.groups.iter().map(|g| (g.group.as_str(), (g.cpu, g.write_bytes))).collect();
        assert_eq!(by["tokio workers (HTTP)"], (Duration::from_millis(1_200), 0));
        assert_eq!(by["ledger-writer"], (Duration::from_secs(1), 8_000));
        assert_eq!(by["exited or unnamed"], (Duration::from_millis(800), 2_000));
        assert_eq!(d.groups[0].group, "tokio workers (HTTP)");
    }
}
