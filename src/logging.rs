//! The log: which lines are written (`LOG`), in which format
//! (`LOG_FORMAT`), and how they look where they are shipped.
//!
//! Both settings are checked before anything runs, like every other
//! setting: a typo must not silently turn logging off (`LOG=inf` is valid
//! env-filter syntax, naming a target "inf" and nothing else) or fall back
//! to another format (`LOG_FORMAT=jsn`), since an operator finds out only
//! when the line they need is missing.
//!
//! Human lines carry ANSI colour only on a terminal (not in a file, a pipe
//! or journald, where escape codes are noise), and never when `NO_COLOR`
//! is set. JSON lines carry an event's spans once, as the `spans` list
//! (outermost first); the `span` object, a copy of the innermost, is left
//! out.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// A `LOG` or `LOG_FORMAT` that cannot be used; the message names the
/// setting and what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("LOG {given:?} holds {directive:?}, which is no level: use error, warn, info, debug, trace or off, or TARGET=LEVEL such as invitation_ledger=debug.")]
    NotALevel { given: String, directive: String },
    #[error("LOG {given:?} is not a log filter ({why}): use a level such as info, or TARGET=LEVEL directives such as invitation_ledger=debug,warn.")]
    Filter { given: String, why: String },
    #[error("LOG_FORMAT {given:?} is not a log format: use human (the default) or json.")]
    Format { given: String },
    #[error("the log could not be set up: {0}.")]
    Install(String),
}

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log shipping.
    Json,
}

/// `LOG` and `LOG_FORMAT`, accepted by every command (before or after its
/// name).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// Which log lines are written: a level (error, warn, info, debug, trace,
    /// off) or comma-separated TARGET=LEVEL directives such as
    /// invitation_ledger=debug,warn (tracing's env-filter syntax). Default:
    /// info; for `demo`, error.
    #[arg(long = "log", env = "LOG", global = true, value_name = "FILTER", help_heading = "Logging")]
    pub log: Option<String>,
    /// human (the default: readable lines, coloured only on a terminal and
    /// without NO_COLOR) or json (one JSON object per line, to ship).
    #[arg(long = "log-format", env = "LOG_FORMAT", global = true, value_name = "FORMAT", help_heading = "Logging")]
    pub log_format: Option<String>,
}

/// The levels a bare directive may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The filter `LOG` asks for; `default` when it is unset or blank.
///
/// A bare word must be a level (or a number 0–5, which env-filter reads
/// as one) or name one of this program's own modules: env-filter would
/// take any other word as a target's name and drop every line but that
/// target's, which is how a typo turns logging off.
///
/// # Errors
/// [`LogError`] naming `LOG` when it is not that.
pub fn filter(raw: Option<&str>, default: &str) -> Result<EnvFilter, LogError> {
    let given = match raw.map(str::trim) {
        None | Some("") => default,
        Some(s) => s,
    };
    for directive in given.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[', ':']);
        let level =
            LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) || directive.parse::<u8>().is_ok_and(|n| n <= 5);
        if bare && !level && !directive.starts_with("invitation_ledger") {
            return Err(LogError::NotALevel { given: given.to_owned(), directive: directive.to_owned() });
        }
    }
    EnvFilter::builder().parse(given).map_err(|e| LogError::Filter { given: given.to_owned(), why: e.to_string() })
}

/// The format `LOG_FORMAT` asks for (human when unset or blank).
///
/// # Errors
/// [`LogError::Format`] for any other value.
pub fn format(raw: Option<&str>) -> Result<Format, LogError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(Format::Human),
        Some(f) if f.eq_ignore_ascii_case("human") => Ok(Format::Human),
        Some(f) if f.eq_ignore_ascii_case("json") => Ok(Format::Json),
        Some(f) => Err(LogError::Format { given: f.to_owned() }),
    }
}

/// Whether human lines may be coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the process's logger on stderr as `args` ask, with `default`
/// as the filter when `LOG` is unset. Both settings are checked first, so
/// nothing is installed when either is wrong.
///
/// # Errors
/// [`LogError`] naming the setting that cannot be used.
pub fn init(args: &LogArgs, default: &str) -> Result<(), LogError> {
    let filter = filter(args.log.as_deref(), default)?;
    let format = format(args.log_format.as_deref())?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        Format::Human => builder.with_ansi(colour()).try_init(),
        Format::Json => builder.json().with_ansi(false).with_current_span(false).with_span_list(true).try_init(),
    };
    installed.map_err(|e| LogError::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_directives_and_this_programs_targets_are_filters() {
        // given the spellings an operator writes
        for raw in
            ["info", "WARN", "off", "3", "invitation_ledger=debug,warn", "warp=off,info", "invitation_ledger", "a::b"]
        {
            // then each is a filter
            assert!(filter(Some(raw), "info").is_ok(), "{raw}");
        }
        // and unset or blank is the default
        assert_eq!(filter(None, "error").unwrap().to_string(), "error");
        assert_eq!(filter(Some("  "), "info").unwrap().to_string(), "info");
    }

    #[test]
    fn a_typo_in_log_is_refused_with_one_sentence_naming_it() {
        // given a misspelt level, a level env-filter does not know, and broken syntax
        for (raw, says) in [
            ("inf", "holds \"inf\", which is no level"),
            ("warning", "holds \"warning\", which is no level"),
            ("info,debgu", "holds \"debgu\", which is no level"),
            ("invitation_ledger=verbose", "is not a log filter ("),
        ] {
            // when it is read
            let e = filter(Some(raw), "info").unwrap_err().to_string();
            // then the sentence names LOG and what to write
            assert!(e.starts_with(&format!("LOG {raw:?} ")) && e.contains(says), "{raw}: {e}");
            assert!(e.contains("such as") && e.ends_with('.'), "{e}");
        }
    }

    #[test]
    fn log_format_is_human_or_json_and_nothing_else() {
        // given the two formats, their default, and a typo
        assert_eq!(format(None).unwrap(), Format::Human);
        assert_eq!(format(Some("")).unwrap(), Format::Human);
        assert_eq!(format(Some("human")).unwrap(), Format::Human);
        assert_eq!(format(Some("JSON")).unwrap(), Format::Json);
        // then the typo is refused, naming the setting
        let e = format(Some("jsn")).unwrap_err().to_string();
        assert_eq!(e, "LOG_FORMAT \"jsn\" is not a log format: use human (the default) or json.");
    }
}
