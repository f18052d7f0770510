//! The `kontextual` binary: parse, run, map the outcome to an exit code.

mod cli;
mod commands;
mod config;
mod events;
mod heap;
mod ingest;
mod jobs;
mod output;
mod package;
mod progress;
mod retrieval;
mod webhooks;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind as ClapKind;
use kontextual_app::ErrorKind;

fn main() -> ExitCode {
    reset_sigpipe();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing(cli.global.quiet);
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => report(&err, json),
    }
}

/// Output piped into `head` and closed early ends the process quietly, as
/// Unix tools do, instead of panicking on a failed `println!`.
fn reset_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts; no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Clap's own errors, as JSON when the caller asked for JSON; help and version print normally.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ClapKind::DisplayHelp
            | ClapKind::DisplayVersion
            | ClapKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ClapKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    // (args_os: an argument that is not UTF-8 must not panic here)
    let json = std::env::args_os().any(|a| a == "--json");
    if e.kind() == ClapKind::InvalidUtf8 {
        return not_utf8(json);
    }
    if json {
        let message = e
            .kind()
            .as_str()
            .map_or_else(|| e.to_string(), str::to_owned);
        let detail = e.render().to_string();
        let body = serde_json::json!({ "error": { "code": "usage", "message": message, "detail": detail.trim() } });
        // one rule for --json: the error is one object on stdout, nothing else
        println!("{body}");
        return ExitCode::from(2);
    }
    let _ = e.print();
    ExitCode::from(2)
}

/// Names, refs, metadata and every other argument are text: one that is
/// not valid UTF-8 is refused (exit 2), naming the option it belongs to —
/// never replaced lossily (that would make different bytes one name).
fn not_utf8(json: bool) -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let at = args.iter().position(|a| a.to_str().is_none()).unwrap_or(0);
    let shown = args
        .get(at)
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let option = at
        .checked_sub(1)
        .and_then(|p| args[p].to_str())
        .filter(|p| p.starts_with('-'));
    let what = match option {
        Some(o) => format!("the value of {o}"),
        None => format!("argument {at}"),
    };
    let message = format!(
        "{what} is not valid UTF-8 ({shown:?}, with U+FFFD where the bytes are invalid): names, refs, metadata and queries must be UTF-8"
    );
    if json {
        let body = serde_json::json!({ "error": { "code": "usage", "message": message } });
        println!("{body}");
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(2)
}

fn init_tracing(quiet: bool) {
    let default = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KONTEXTUAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Which row of the services' error table a failure belongs to, looking
/// through its causes for the first one that says. `None`: a closed pipe,
/// which ends the command quietly and successfully.
fn classify(err: &anyhow::Error) -> Option<ErrorKind> {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<kontextual_app::Error>() {
            return Some(e.kind());
        }
        if cause
            .downcast_ref::<kontextual_model::ModelError>()
            .is_some()
        {
            return Some(ErrorKind::InvalidInput);
        }
        if let Some(e) = cause.downcast_ref::<kontextual_server::ServeError>() {
            return Some(e.kind());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::BrokenPipe => None,
                // a content stream whose bytes do not match their digest
                std::io::ErrorKind::InvalidData => Some(ErrorKind::Corrupted),
                _ if kontextual_app::is_storage_full(io) => Some(ErrorKind::StorageFull),
                _ => Some(ErrorKind::Io),
            };
        }
    }
    // what the command itself refused (a flag combination, a missing file
    // argument) is the caller's input
    Some(ErrorKind::InvalidInput)
}

fn report(err: &anyhow::Error, json: bool) -> ExitCode {
    let Some(kind) = classify(err) else {
        return ExitCode::SUCCESS;
    };
    let row = kind.code();
    let message = format!("{err:#}");
    // One rule: with --json an error is one JSON object on stdout and
    // nothing on stderr; without, one line on stderr and nothing on stdout.
    if json {
        let body = serde_json::json!({ "error": { "code": row.code, "message": message } });
        println!("{body}");
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(row.exit_code)
}
