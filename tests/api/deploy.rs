//! The deployment files in `deploy/`, checked by the tools that will read
//! them:
//!
//! - `promtool` (Debian package `prometheus`) checks the alert rules and the
//!   example scrape config, and runs the rules' unit tests
//!   (`deploy/prometheus/alerts.test.yml`);
//! - `systemd-analyze` (Debian package `systemd`) verifies the unit, with
//!   `ExecStart=` pointed at the binary cargo built, and scores its sandbox;
//! - the Grafana dashboard is parsed, and its queries are checked as PromQL
//!   by `promtool`;
//! - every metric name in the rules and the dashboard is one the service
//!   exposes ([`SERVICE_METRICS`]);
//! - the Dockerfile is read instruction by instruction, and its HEALTHCHECK
//!   command is run against the real binary.
//!
//! A missing tool fails its test with the package to install (`scripts/test`
//! installs both); nothing here skips.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::binary::{ServeProcess, BIN};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The metric families the service exposes on `GET /metrics`. This mirrors
/// the service's metrics (src/metrics.rs and the process collector): when a
/// metric is renamed, added or removed there, change it here too, and the
/// checks below show which rule or panel has to follow.
const SERVICE_METRICS: &[(&str, Kind)] = &[
    // The standard process collector.
    ("process_cpu_seconds_total", Kind::Counter),
    ("process_open_fds", Kind::Gauge),
    ("process_max_fds", Kind::Gauge),
    ("process_virtual_memory_bytes", Kind::Gauge),
    ("process_resident_memory_bytes", Kind::Gauge),
    ("process_start_time_seconds", Kind::Gauge),
    ("process_threads", Kind::Gauge),
    // labels: route, status_class (2xx, 4xx, 5xx)
    ("invitation_ledger_http_request_duration_seconds", Kind::Histogram),
    // labels: source (lightspark, grid), result (accepted, duplicate,
    // bad_signature, malformed, too_large, body_timeout, unavailable)
    ("invitation_ledger_webhooks_total", Kind::Counter),
    // the same event id stored before with another body (a tampering signal)
    ("invitation_ledger_webhooks_same_id_other_body_total", Kind::Counter),
    // labels: kind (invitee_payment, inviter_incentive, inviter_notification,
    // inviter_failure_notice),
    // state (not_due, pending, requested, retry_scheduled, succeeded, failed,
    // in_doubt, ineligible, invalid)
    ("invitation_ledger_obligations", Kind::Gauge),
    // labels: kind, outcome
    ("invitation_ledger_obligation_calls_total", Kind::Counter),
    // labels: source, outcome
    ("invitation_ledger_fetches_total", Kind::Counter),
    ("invitation_ledger_invitations_awaiting_data", Kind::Gauge),
    // labels: source; claims of registered invitations no webhook announced
    ("invitation_ledger_claims_found_by_sweep_total", Kind::Counter),
    ("invitation_ledger_ledger_head_seq", Kind::Gauge),
    ("invitation_ledger_projection_lag_events", Kind::Gauge),
    ("invitation_ledger_reconciler_last_pass_age_seconds", Kind::Gauge),
    ("invitation_ledger_oldest_retrying_obligation_age_seconds", Kind::Gauge),
    // labels: version; always 1
    ("invitation_ledger_build_info", Kind::Gauge),
    ("invitation_ledger_ledger_commit_batch_size", Kind::Histogram),
    ("invitation_ledger_ledger_commit_seconds", Kind::Histogram),
    ("invitation_ledger_ledger_appends_total", Kind::Counter),
    ("invitation_ledger_obligations_in_doubt", Kind::Gauge),
    ("invitation_ledger_projection_checkpoint_seq", Kind::Gauge),
    // 1 while this instance leads the reconciler (a sole SQLite instance
    // always does), and the fencing epoch it last led under
    ("invitation_ledger_reconciler_leader", Kind::Gauge),
    ("invitation_ledger_reconciler_epoch", Kind::Gauge),
    ("invitation_ledger_reconciler_passes_total", Kind::Counter),
    // 1 while the projections fold what they missed (reads answer 503)
    ("invitation_ledger_projection_catching_up", Kind::Gauge),
    // what the read side asked of SQLite: statements, rows stepped, of
    // which in full scans, and sorts
    ("invitation_ledger_read_statements_total", Kind::Counter),
    ("invitation_ledger_read_steps_total", Kind::Counter),
    ("invitation_ledger_read_full_scan_steps_total", Kind::Counter),
    ("invitation_ledger_read_sorts_total", Kind::Counter),
];

/// Series that come from Prometheus itself (`up` of the scrape) and from the
/// blackbox_exporter probe of `/readyz` (readiness is not a metric).
const SCRAPE_METRICS: &[&str] = &["up", "probe_success"];

/// The alerts deploy/prometheus/alerts.yml must define, with their severity.
const EXPECTED_ALERTS: &[(&str, &str)] = &[
    ("InvitationLedgerObligationsInDoubt", "critical"),
    ("InvitationLedgerObligationsFailed", "warning"),
    ("InvitationLedgerPaymentPlatformFailing", "critical"),
    ("InvitationLedgerObligationRetryingLong", "warning"),
    ("InvitationLedgerInvitationsAwaitingData", "warning"),
    ("InvitationLedgerClaimFoundBySweep", "warning"),
    ("InvitationLedgerProjectionLag", "warning"),
    ("InvitationLedgerReconcilerStalled", "warning"),
    ("InvitationLedgerNoReconcilerLeader", "critical"),
    ("InvitationLedgerSeveralReconcilerLeaders", "warning"),
    ("InvitationLedgerNotWritable", "critical"),
    ("InvitationLedgerNotReady", "critical"),
    ("InvitationLedgerDown", "critical"),
    ("InvitationLedgerWebhookSignaturesRejected", "warning"),
    ("InvitationLedgerWebhookSameIdOtherBody", "warning"),
];

// ---------------------------------------------------------------------------
// helpers

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The path of `tool`, which must be installed: otherwise the test fails and
/// says which Debian package brings it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path_dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let fallback = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    path_dirs.iter().chain(fallback.iter()).map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "`{name}` not found: this test needs it. Install the Debian package `{package}` \
             (`apt-get install -y {package}`), or run `scripts/test`, which installs it when missing."
        )
    })
}

fn promtool() -> PathBuf {
    tool("promtool", "prometheus")
}

fn systemd_analyze() -> PathBuf {
    tool("systemd-analyze", "systemd")
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("running {shown}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_success(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed:\n{}", text(out));
}

// ---------------------------------------------------------------------------
// PromQL: the metric names an expression reads

const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: &[&str] = &["and", "or", "unless", "offset", "bool", "inf", "nan", "start", "end"];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
];

/// Index just past the bracket that closes the one at `open`, skipping
/// string literals.
fn skip_balanced(s: &[char], open: usize) -> usize {
    let o = s[open];
    let c = match o {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        other => panic!("not an opening bracket: {other}"),
    };
    let mut depth = 0;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            '"' | '\'' | '`' => i = skip_string(s, i) - 1,
            ch if ch == o => depth += 1,
            ch if ch == c => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced {o} in {:?}", s.iter().collect::<String>());
}

fn skip_string(s: &[char], start: usize) -> usize {
    let quote = s[start];
    let mut i = start + 1;
    while i < s.len() {
        if s[i] == '\\' && quote != '`' {
            i += 2;
            continue;
        }
        if s[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    panic!("unterminated string in {:?}", s.iter().collect::<String>());
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Metric names read by a PromQL expression: identifiers outside label
/// matchers, ranges, strings and grouping clauses that are not functions,
/// operators or keywords. Grafana variables (`$job`, `${x}`) are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < s.len() && s[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '{' || c == '[' {
            i = skip_balanced(&s, i);
        } else if c == '#' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            if i < s.len() && s[i] == '{' {
                i = skip_balanced(&s, i);
            } else {
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number or a duration (5m, 1e3, 0.99).
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let after = next_non_space(i);
            let call = after < s.len() && s[after] == '(';
            if GROUPING.contains(&word.as_str()) {
                if call {
                    i = skip_balanced(&s, after);
                }
            } else if !call && !KEYWORDS.contains(&word.as_str()) && !AGGREGATIONS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every name a query may read: the service's families (histograms as their
/// `_bucket`, `_sum` and `_count` series) and the scrape's own.
fn allowed_names() -> BTreeMap<String, &'static str> {
    let mut allowed = BTreeMap::new();
    for &(name, kind) in SERVICE_METRICS {
        allowed.insert(name.to_owned(), name);
        if kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                allowed.insert(format!("{name}{suffix}"), name);
            }
        }
    }
    for &name in SCRAPE_METRICS {
        allowed.insert(name.to_owned(), name);
    }
    allowed
}

/// The families `exprs` read; fails naming any expression that reads a
/// metric the service does not expose.
fn families_used(what: &str, exprs: &[(String, String)]) -> BTreeSet<&'static str> {
    let allowed = allowed_names();
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (place, expr) in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{what}: {place} reads no metric at all: {expr}");
        for name in names {
            match allowed.get(&name) {
                Some(family) => {
                    used.insert(*family);
                }
                None => unknown.push(format!("{place}: `{name}` in {expr}")),
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "{what} read metrics the service does not expose (see SERVICE_METRICS in tests/api/deploy.rs):\n{}",
        unknown.join("\n")
    );
    used
}

#[test]
fn the_promql_reader_finds_metric_names_and_only_those() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval])))
           / on (job) group_left (kind) b offset 5m > bool 1e3 or absent(up{job="j"}) and c_total - ${v} * $w"#,
    );
    assert_eq!(names, ["a_bucket", "b", "c_total", "up"].iter().map(|s| s.to_string()).collect());
}

// ---------------------------------------------------------------------------
// Prometheus rules

struct Alert {
    name: String,
    expr: String,
    severity: Option<String>,
    summary: Option<String>,
    description: Option<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The value of `key:` among `lines`: inline, or a block scalar (`|`, `>-`)
/// made of the following lines indented deeper than the key.
fn yaml_field(lines: &[&str], key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    let at = lines.iter().position(|l| l.trim_start().starts_with(&prefix))?;
    let line = lines[at];
    let value = line.trim_start()[prefix.len()..].trim();
    if value.starts_with('|') || value.starts_with('>') {
        let block: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
            .map(|l| l.trim())
            .collect();
        Some(block.join("\n").trim().to_owned())
    } else {
        Some(value.trim_matches('"').trim_matches('\'').to_owned())
    }
}

/// The rules of deploy/prometheus/alerts.yml, read line by line (the file is
/// laid out as one `- alert:` block per rule; promtool checks its YAML).
fn alerts() -> Vec<Alert> {
    let text = read("deploy/prometheus/alerts.yml");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let starts: Vec<usize> =
        lines.iter().enumerate().filter(|(_, l)| l.trim_start().starts_with("- alert:")).map(|(i, _)| i).collect();
    assert!(!starts.is_empty(), "no `- alert:` rule in deploy/prometheus/alerts.yml");
    let mut out = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let block = &lines[start..end];
        let name = block[0].trim_start()["- alert:".len()..].trim().to_owned();
        let expr = yaml_field(block, "expr").unwrap_or_else(|| panic!("alert {name} has no expr"));
        out.push(Alert {
            expr,
            severity: yaml_field(block, "severity"),
            summary: yaml_field(block, "summary"),
            description: yaml_field(block, "description"),
            name,
        });
    }
    out
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = run(Command::new(promtool()).arg("check").arg("rules").arg(repo("deploy/prometheus/alerts.yml")));
    assert_success("promtool check rules deploy/prometheus/alerts.yml", &out);
    let expected = format!("SUCCESS: {} rules found", EXPECTED_ALERTS.len());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&expected), "expected {expected:?}:\n{}", text(&out));
}

#[test]
fn the_alert_rules_fire_as_their_unit_tests_say() {
    let out = run(Command::new(promtool())
        .current_dir(repo("deploy/prometheus"))
        .arg("test")
        .arg("rules")
        .arg("alerts.test.yml"));
    assert_success("promtool test rules deploy/prometheus/alerts.test.yml", &out);

    // Every alert has a case where it fires and one where it stays quiet.
    let tests = read("deploy/prometheus/alerts.test.yml");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("alertname:") {
            let next = lines.get(i + 1).copied().unwrap_or("");
            if next == "exp_alerts: []" {
                quiet.insert(name.trim());
            } else {
                fires.insert(name.trim());
            }
        }
    }
    for (name, _) in EXPECTED_ALERTS {
        assert!(fires.contains(name), "alerts.test.yml has no case where {name} fires");
        assert!(quiet.contains(name), "alerts.test.yml has no case where {name} stays quiet");
    }
}

#[test]
fn promtool_accepts_the_example_scrape_config_and_finds_the_rules() {
    // The config names a bearer-token file that promtool insists exists:
    // check a copy that points at a token in a scratch folder.
    let dir = tempfile::tempdir().unwrap();
    let config = read("deploy/prometheus/prometheus.yml");
    let token_path = "/etc/prometheus/invitation-ledger.token";
    assert!(config.contains(token_path), "prometheus.yml no longer reads the token from {token_path}");
    let token = dir.path().join("token");
    std::fs::write(&token, "a-read-api-token-of-32-characters\n").unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), config.replace(token_path, token.to_str().unwrap())).unwrap();
    std::fs::copy(repo("deploy/prometheus/alerts.yml"), dir.path().join("alerts.yml")).unwrap();
    let out = run(Command::new(promtool()).arg("check").arg("config").arg(dir.path().join("prometheus.yml")));
    assert_success("promtool check config deploy/prometheus/prometheus.yml", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SUCCESS: 1 rule files found"), "the config does not load alerts.yml:\n{}", text(&out));

    // The job names the rules select on are the ones scraped.
    for job in ["job_name: invitation-ledger\n", "job_name: invitation-ledger-readyz\n"] {
        assert!(config.contains(job), "prometheus.yml has no `{}`", job.trim());
    }
}

#[test]
fn every_alert_has_a_severity_and_tells_the_operator_what_to_do() {
    let alerts = alerts();
    let names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    let expected: Vec<&str> = EXPECTED_ALERTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "the alerts in deploy/prometheus/alerts.yml");
    for alert in &alerts {
        let (_, severity) = EXPECTED_ALERTS.iter().find(|(n, _)| *n == alert.name).unwrap();
        assert_eq!(alert.severity.as_deref(), Some(*severity), "severity of {}", alert.name);
        let summary = alert.summary.as_deref().unwrap_or_default();
        assert!(summary.len() > 10, "{} has no summary", alert.name);
        let description = alert.description.as_deref().unwrap_or_default();
        // Something to act on: a command in backquotes (`invitation-ledger
        // resolve ...`, `journalctl ...`) or a setting (READ_API_TOKEN).
        let names_a_command = description.matches('`').count() >= 2;
        let names_a_setting = description
            .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .any(|w| w.len() > 4 && w.contains('_') && w.starts_with(|c: char| c.is_ascii_uppercase()));
        assert!(
            names_a_command || names_a_setting,
            "{}'s description names no command or setting to act on: {description}",
            alert.name
        );
    }
    let in_doubt = alerts.iter().find(|a| a.name == "InvitationLedgerObligationsInDoubt").unwrap();
    assert!(in_doubt.description.as_deref().unwrap().contains("invitation-ledger resolve"));
}

#[test]
fn the_alert_rules_read_only_the_services_metrics() {
    let exprs: Vec<(String, String)> = alerts().into_iter().map(|a| (format!("alert {}", a.name), a.expr)).collect();
    let used = families_used("deploy/prometheus/alerts.yml", &exprs);
    for family in [
        "invitation_ledger_obligations",
        "invitation_ledger_invitations_awaiting_data",
        "invitation_ledger_projection_lag_events",
        "invitation_ledger_reconciler_last_pass_age_seconds",
        "invitation_ledger_webhooks_total",
        "invitation_ledger_obligation_calls_total",
        "invitation_ledger_oldest_retrying_obligation_age_seconds",
        "invitation_ledger_webhooks_same_id_other_body_total",
        "up",
        "probe_success",
    ] {
        assert!(used.contains(family), "no alert reads {family}");
    }
}

// ---------------------------------------------------------------------------
// Grafana

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/invitation-ledger.json")).expect("the dashboard is JSON")
}

/// Every panel, those inside (collapsed) rows included.
fn panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(inner) = p.get("panels") {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// (where, PromQL) of every query of the dashboard: panel targets and
/// `label_values(selector, label)` variables.
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash).into_iter().filter(|p| p["type"] != "row") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default().to_owned();
            out.push((format!("panel {:?} query {}", p["title"].as_str().unwrap_or("?"), t["refId"]), expr));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"].as_str().or_else(|| v["query"].as_str()).unwrap_or_default();
        let selector = q
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map(|(selector, _label)| selector.trim().to_owned())
            .unwrap_or_else(|| panic!("variable {} is not label_values(selector, label): {q}", v["name"]));
        out.push((format!("variable {}", v["name"]), selector));
    }
    out
}

#[test]
fn every_dashboard_panel_has_a_query_on_the_prometheus_variable() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion must be 36 or later");
    let vars = dash["templating"]["list"].as_array().expect("templating.list");
    let ds_var = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a datasource variable of type prometheus");
    let ds_uid = format!("${{{}}}", ds_var["name"].as_str().unwrap());
    assert_eq!(ds_uid, "${DS_PROMETHEUS}");

    let all = panels(&dash);
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for p in &all {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(ids.insert(p["id"].as_u64().expect("every panel has a numeric id")), "panel id {} twice", p["id"]);
        assert!(p["gridPos"]["w"].as_u64().is_some() && p["gridPos"]["h"].as_u64().is_some(), "{title}: gridPos");
        if p["type"] == "row" {
            continue;
        }
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert_eq!(p["datasource"]["uid"], ds_uid, "panel {title:?} does not use the datasource variable");
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {title:?} has no query"));
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {title:?} has a target without a query");
            assert!(t["refId"].as_str().is_some_and(|r| !r.is_empty()), "panel {title:?}: a target without refId");
        }
        queried += 1;
    }
    assert!(queried >= 10, "only {queried} panels with queries");
}

#[test]
fn the_dashboard_reads_only_the_services_metrics_and_all_of_them() {
    let used = families_used("deploy/grafana/invitation-ledger.json", &dashboard_queries(&dashboard()));
    for &(family, _) in SERVICE_METRICS {
        let required = family.starts_with("invitation_ledger_")
            || family == "process_resident_memory_bytes"
            || family == "process_cpu_seconds_total";
        assert!(!required || used.contains(family), "no dashboard panel shows {family}");
    }
}

#[test]
fn the_dashboard_queries_are_promql_that_promtool_accepts() {
    // Each query becomes a recording rule, with Grafana's variables given
    // values, so that promtool parses it as Prometheus would.
    let dash = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let queries = dashboard_queries(&dash);
    for (n, (place, expr)) in queries.iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "5m").replace("$job", "invitation-ledger");
        assert!(!expr.contains('$'), "{place}: a Grafana variable this test does not know: {expr}");
        rules.push_str(&format!(
            "      # {place}\n      - record: dashboard:query_{n}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = run(Command::new(promtool()).arg("check").arg("rules").arg(&file));
    assert_success(&format!("promtool check rules on the dashboard's queries:\n{rules}"), &out);
    let expected = format!("SUCCESS: {} rules found", queries.len());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&expected), "expected {expected:?}:\n{}", text(&out));
}

// ---------------------------------------------------------------------------
// systemd

const UNIT: &str = "deploy/systemd/invitation-ledger.service";
const EXEC_START: &str = "ExecStart=/usr/local/bin/invitation-ledger serve";

/// The unit in a scratch folder with `ExecStart=` pointed at the binary
/// cargo built (systemd-analyze rejects a unit whose binary is missing, and
/// /usr/local/bin/invitation-ledger is not installed here), and with any
/// `extra` lines added at the end of [Service].
fn unit_copy(dir: &Path, extra: &str) -> PathBuf {
    let unit = read(UNIT);
    assert_eq!(unit.matches(EXEC_START).count(), 1, "{UNIT} must have exactly `{EXEC_START}`");
    let unit = unit
        .replace(EXEC_START, &format!("ExecStart={BIN} serve"))
        .replace("\n[Install]", &format!("{extra}\n[Install]"));
    let path = dir.join("invitation-ledger.service");
    std::fs::write(&path, unit).unwrap();
    path
}

fn unit_directives() -> Vec<(String, String)> {
    read(UNIT)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not a directive: {l}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

#[test]
fn systemd_analyze_verifies_the_unit_without_a_warning() {
    let analyze = systemd_analyze();
    let dir = tempfile::tempdir().unwrap();

    // systemd-analyze only warns (and exits 0) on a misspelt or unparsable
    // directive, so the check below is that it prints nothing at all. First,
    // that it does print on this machine when something is wrong.
    let broken = unit_copy(dir.path(), "ProtectSytem=strict\nTimeoutStopSec=soon\n");
    let out = run(Command::new(&analyze).arg("verify").arg(&broken));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ProtectSytem") && stderr.contains("soon"),
        "systemd-analyze verify did not report two broken directives, so its silence would prove nothing:\n{}",
        text(&out)
    );

    let unit = unit_copy(dir.path(), "");
    let out = run(Command::new(&analyze).arg("verify").arg(&unit));
    assert_success("systemd-analyze verify", &out);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {UNIT} (ExecStart= pointed at the built binary) printed warnings:\n{}",
        text(&out)
    );
}

#[test]
fn the_units_sandbox_rates_ok_in_systemd_analyze_security() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path(), "");
    // Exposure 0.0 (locked down) .. 10.0 (none); --threshold is in tenths.
    // This unit rates 1.5; above 2.0 something was loosened.
    let out = run(Command::new(systemd_analyze())
        .args(["security", "--no-pager", "--offline=yes", "--threshold=20"])
        .arg(&unit));
    assert_success("systemd-analyze security --offline=yes --threshold=20 (exposure above 2.0)", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Overall exposure level"), "{}", text(&out));
}

#[test]
fn the_unit_runs_the_service_as_the_brief_says() {
    let d = unit_directives();
    let get = |key: &str| -> Vec<&str> { d.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect() };
    let one = |key: &str| -> &str {
        match get(key).as_slice() {
            [v] => v,
            other => panic!("{UNIT}: expected one {key}=, found {other:?}"),
        }
    };
    assert_eq!(one("ExecStart"), "/usr/local/bin/invitation-ledger serve");
    assert_eq!(one("User"), "invitation-ledger");
    assert_eq!(one("Group"), "invitation-ledger");
    assert_eq!(one("StateDirectory"), "invitation-ledger");
    assert!(get("Environment").contains(&"LEDGER_DB=/var/lib/invitation-ledger/ledger.db"));
    assert_eq!(one("EnvironmentFile"), "/etc/invitation-ledger/env");
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("ReadWritePaths"), "/var/lib/invitation-ledger");
    assert_eq!(one("CapabilityBoundingSet"), "");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
    ] {
        assert_eq!(one(key), value, "{key}=");
    }
    // The stop timeout leaves room for in-flight work, bounded by
    // REQUEST_TIMEOUT_MS (10 s by default).
    let stop = one("TimeoutStopSec");
    let seconds: u64 = match stop.strip_suffix("min") {
        Some(m) => m.parse::<u64>().map(|m| m * 60),
        None => stop.trim_end_matches('s').parse(),
    }
    .unwrap_or_else(|_| panic!("TimeoutStopSec={stop} is not N, Ns or Nmin"));
    assert!(seconds > 10, "TimeoutStopSec={stop} is not above the 10 s request timeout");
}

#[test]
fn the_env_example_holds_placeholders_and_settings_the_binary_knows() {
    let env = read("deploy/systemd/env.example");
    let help = run(Command::new(BIN).args(["serve", "--help"]));
    assert_success("invitation-ledger serve --help", &help);
    let help = String::from_utf8_lossy(&help.stdout);
    // Read by main.rs straight from the environment, not flags; and the Grid
    // key, which `serve` takes once Grid webhooks land (remove it from here
    // when `serve --help` lists it).
    let not_flags = ["LOG", "LOG_FORMAT", "GRID_WEBHOOK_PUBLIC_KEY"];
    let mut keys = BTreeSet::new();
    for line in env.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let setting = line.strip_prefix('#').unwrap_or(line);
        let Some((key, value)) = setting.split_once('=') else { continue };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            continue; // prose
        }
        keys.insert(key.to_owned());
        assert!(
            // `[env: KEY=]`, or `[env: KEY]` for a secret (hide_env_values)
            not_flags.contains(&key)
                || help.contains(&format!("[env: {key}="))
                || help.contains(&format!("[env: {key}]")),
            "env.example sets {key}, which `invitation-ledger serve --help` does not know"
        );
        assert_ne!(key, "LEDGER_DB", "env.example must not move the ledger out of the state directory");
        let secret = key.contains("KEY") || key.contains("SECRET") || key.contains("TOKEN");
        assert!(!secret || value.starts_with("replace-with-"), "{key} in env.example is not a placeholder: {value}");
        if !line.starts_with('#') {
            assert!(!value.is_empty(), "{key}= is set to nothing");
        }
    }
    for required in
        ["LIGHTSPARK_WEBHOOK_SIGNING_KEY", "READ_API_TOKEN", "PAYOUT_URL", "NOTIFY_URL", "INVITER_INCENTIVE"]
    {
        assert!(keys.contains(required), "env.example does not mention {required}");
    }
    for key in ["LIGHTSPARK_API_CLIENT_ID", "LIGHTSPARK_API_CLIENT_SECRET", "GRID_WEBHOOK_PUBLIC_KEY"] {
        assert!(keys.contains(key), "env.example does not mention {key}");
    }
}

// ---------------------------------------------------------------------------
// Docker

/// (instruction, arguments) of a Dockerfile: comments dropped, continuation
/// lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("deploy/Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (op, args) = current.split_once(char::is_whitespace).unwrap_or((current.as_str(), ""));
                out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "the Dockerfile ends inside a continued line");
    out
}

/// The Dockerfile's stages: each FROM's arguments and the instructions
/// after it.
fn stages() -> Vec<(String, Vec<(String, String)>)> {
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (op, args) in dockerfile() {
        if op == "FROM" {
            stages.push((args, Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push((op, args));
        } else {
            assert_eq!(op, "ARG", "only ARG may come before the first FROM");
        }
    }
    stages
}

fn healthcheck_command() -> Vec<String> {
    let (_, body) = stages().pop().unwrap();
    let args = body.iter().find(|(op, _)| op == "HEALTHCHECK").map(|(_, a)| a.clone()).expect("a HEALTHCHECK");
    let (_, cmd) = args.split_once("CMD ").expect("HEALTHCHECK ... CMD [...]");
    serde_json::from_str(cmd.trim()).expect("the HEALTHCHECK CMD in exec form (a JSON array)")
}

#[test]
fn the_dockerfile_builds_locked_in_rust_and_runs_slim_as_non_root() {
    let stages = stages();
    assert!(stages.len() >= 2, "a multi-stage Dockerfile");
    let (builder_from, builder) = &stages[0];
    assert!(
        builder_from.starts_with("rust:") && builder_from.ends_with(" AS builder"),
        "first stage: FROM rust:... AS builder, not {builder_from}"
    );
    let build = builder.iter().find(|(op, a)| op == "RUN" && a.contains("cargo build")).expect("RUN cargo build");
    for flag in ["--release", "--locked", "--bin invitation-ledger"] {
        assert!(build.1.contains(flag), "cargo build without {flag}: {}", build.1);
    }
    // The builder's Rust is the one Cargo.toml asks for.
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"'))
        .expect("rust-version in Cargo.toml");
    let docker_text = read("deploy/Dockerfile");
    assert!(docker_text.contains(&format!("ARG RUST_VERSION={rust_version}\n")), "ARG RUST_VERSION={rust_version}");

    let (runtime_from, runtime) = stages.last().unwrap();
    assert!(runtime_from.starts_with("debian:") && runtime_from.contains("-slim"), "runtime: {runtime_from}");
    let has = |op: &str, args: &str| runtime.iter().any(|(o, a)| o == op && a == args);
    assert!(runtime.iter().any(|(op, a)| op == "COPY" && a.starts_with("--from=builder ")), "COPY --from=builder");

    let user = runtime.iter().rev().find(|(op, _)| op == "USER").map(|(_, a)| a.as_str()).expect("a USER");
    let user_name = user.split(':').next().unwrap();
    assert!(!["", "root", "0"].contains(&user_name), "runs as root: USER {user}");
    assert!(has("VOLUME", "/data"), "VOLUME /data");
    let env: Vec<&str> = runtime.iter().filter(|(op, _)| op == "ENV").flat_map(|(_, a)| a.split_whitespace()).collect();
    assert!(env.contains(&"LEDGER_DB=/data/ledger.db"), "ENV LEDGER_DB=/data/ledger.db: {env:?}");
    assert!(env.contains(&"LISTEN_ADDR=0.0.0.0:3000"), "ENV LISTEN_ADDR=0.0.0.0:3000: {env:?}");
    assert!(has("EXPOSE", "3000"), "EXPOSE 3000");
    assert!(has("STOPSIGNAL", "SIGTERM"), "STOPSIGNAL SIGTERM");
    assert!(healthcheck_command().iter().any(|a| a.contains("/healthz")), "the HEALTHCHECK asks /healthz");
    assert!(has("CMD", r#"["serve"]"#) || has("CMD", r#"["/usr/local/bin/invitation-ledger", "serve"]"#));
    assert!(docker_text.contains("READ_API_TOKEN"), "the Dockerfile must say READ_API_TOKEN is required");

    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().map(str::trim).any(|l| ["target", "target/", "/target", "/target/"].contains(&l)),
        ".dockerignore must exclude target/"
    );
}

#[test]
fn the_services_docker_settings_demand_a_read_api_token() {
    // With the image's LISTEN_ADDR and no token the service refuses to start
    // (before binding anything), as the Dockerfile's comment says.
    let (_, runtime) = stages().pop().unwrap();
    let listen = runtime
        .iter()
        .filter(|(op, _)| op == "ENV")
        .flat_map(|(_, a)| a.split_whitespace())
        .find_map(|kv| kv.strip_prefix("LISTEN_ADDR="))
        .expect("ENV LISTEN_ADDR")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(BIN)
        .arg("serve")
        .env("LEDGER_DB", dir.path().join("ledger.db"))
        .env("LISTEN_ADDR", &listen)
        .env("LIGHTSPARK_WEBHOOK_SIGNING_KEY", "deploy-test-secret")
        .env_remove("READ_API_TOKEN")
        .env("LOG", "warn"));
    assert!(!out.status.success(), "serve on {listen} without READ_API_TOKEN started:\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("READ_API_TOKEN is required"), "{}", text(&out));
}

#[test]
fn the_docker_healthcheck_passes_against_the_service_and_fails_without_it() {
    let cmd = healthcheck_command();
    let bash = tool(&cmd[0], "bash");
    let healthcheck = |listen_addr: &str| -> Output {
        run(Command::new(&bash).args(&cmd[1..]).env_clear().env("LISTEN_ADDR", listen_addr))
    };

    let dir = tempfile::tempdir().unwrap();
    let mut serve = ServeProcess::start(&dir.path().join("ledger.db"), &[]);
    let listen = serve.addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = healthcheck(&listen);
    while !last.status.success() {
        if let Some(status) = serve.child.try_wait().unwrap() {
            panic!("invitation-ledger serve exited ({status}) before its healthcheck passed");
        }
        assert!(Instant::now() < deadline, "the HEALTHCHECK never passed against serve on {listen}:\n{}", text(&last));
        std::thread::sleep(Duration::from_millis(100));
        last = healthcheck(&listen);
    }
    drop(serve);
    let out = healthcheck(&listen);
    assert!(!out.status.success(), "the HEALTHCHECK passes with no service on {listen}:\n{}", text(&out));
}

// ---------------------------------------------------------------------------
// the live /metrics

/// `# TYPE` lines of a Prometheus text exposition, by family name.
fn exposed_families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// Sample lines of `name` (exactly that series name) carrying all `labels`.
fn samples<'a>(text: &'a str, name: &str, labels: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .collect()
}

#[tokio::test]
async fn the_live_metrics_pass_promtool_and_expose_every_family_the_rules_and_dashboard_read() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::spawn(dir.path().join("ledger.db"), vec![]).await;
    let client = reqwest::Client::new();
    let body = crate::support::claimed_body("evt-metrics-1", "inv-metrics-1");
    let ok = client
        .post(serve.url("/webhooks/lightspark"))
        .header("lightspark-signature", crate::support::signature_of(body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let forged = client
        .post(serve.url("/webhooks/lightspark"))
        .header("lightspark-signature", "00".repeat(32))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let unknown = client.get(serve.url("/v1/invitations/inv-nobody")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    let text = client.get(serve.url("/metrics")).send().await.unwrap().text().await.unwrap();

    let families = exposed_families(&text);
    for &(name, kind) in SERVICE_METRICS {
        let want = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert_eq!(
            families.get(name).map(String::as_str),
            Some(want),
            "GET /metrics should expose {name} as a {want} (SERVICE_METRICS says so):\n{text}"
        );
    }
    // And nothing more: a family the list does not know is one no rule or
    // panel can be checked against
    let listed: BTreeSet<&str> = SERVICE_METRICS.iter().map(|(n, _)| *n).collect();
    let unlisted: Vec<&String> = families.keys().filter(|f| !listed.contains(f.as_str())).collect();
    assert!(unlisted.is_empty(), "GET /metrics exposes families SERVICE_METRICS does not list: {unlisted:?}");
    // Durations are labelled by route pattern, so ids never become labels.
    let duration = "invitation_ledger_http_request_duration_seconds_count";
    for (route, class) in
        [("/webhooks/lightspark", "2xx"), ("/webhooks/lightspark", "4xx"), ("/v1/invitations/{id}", "4xx")]
    {
        let route_label = format!("route=\"{route}\"");
        let class_label = format!("status_class=\"{class}\"");
        assert!(
            !samples(&text, duration, &[&route_label, &class_label]).is_empty(),
            "no duration for {route} {class}:\n{text}"
        );
    }
    assert!(!text.contains("inv-nobody"), "an id from a path became a label");
    // Every kind (four) × state (nine) is a series, zeros included, so alerts see 0, not nothing.
    let obligations = samples(&text, "invitation_ledger_obligations", &[]);
    assert_eq!(obligations.len(), 4 * 9, "{obligations:#?}");
    let in_doubt = samples(&text, "invitation_ledger_obligations", &["kind=\"invitee_payment\"", "state=\"in_doubt\""]);
    assert_eq!(in_doubt.len(), 1);
    assert!(in_doubt[0].ends_with(" 0"), "{}", in_doubt[0]);
    let accepted =
        samples(&text, "invitation_ledger_webhooks_total", &["source=\"lightspark\"", "result=\"accepted\""]);
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].ends_with(" 1"), "{}", accepted[0]);

    let path = dir.path().join("metrics.txt");
    std::fs::write(&path, &text).unwrap();
    let out = run(Command::new(promtool())
        .arg("check")
        .arg("metrics")
        .stdin(Stdio::from(std::fs::File::open(&path).unwrap())));
    assert_success("promtool check metrics < GET /metrics", &out);
}
