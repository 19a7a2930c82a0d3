//! The top floor: runs one command line, from logging set-up to the exit code. It may use every
//! module; no module uses it.

use std::process::ExitCode;

use crate::cli::{self, Cli, Command, ExportCommand};
use crate::exit::{Exit, UsageError, print_err};
use crate::{
    bounces, check, config, console, db, demo, dns, export, import, init, lookup, person, postal,
    preview, purge, render, report, resend, send, status,
};

/// Runs one command line; the binary's `main` is only this.
pub fn main_with(cli: Cli) -> ExitCode {
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            print_err(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(error) => {
            if let Some(usage) = error.downcast_ref::<UsageError>() {
                print_err(&format!("error: {usage}"));
                return ExitCode::from(2);
            }
            if db::is_busy(&error) {
                print_err(&format!(
                    "error: the database is busy: another process holds a lock on it for longer than \
                     {}s; nothing was lost, try again later ({error:#})",
                    db::busy_timeout().as_secs()
                ));
                return Exit::TryLater.into();
            }
            print_err(&format!("error: {error:#}"));
            ExitCode::from(1)
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BREACHMAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("breachmail={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr on a full disk) is lost, not a panic.
        .log_internal_errors(false)
        .with_target(false);
    let _ = match cli.log_format {
        cli::LogFormat::Json => builder.json().try_init(),
        cli::LogFormat::Text => builder.compact().try_init(),
    };
}

async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let config_path = config::locate(cli.config.as_deref());
    match cli.command {
        Command::Init { dir } => init::run(&dir).await,
        Command::Demo { dir, people } => demo::run(dir.as_deref(), people).await,
        Command::GeneratePeople { people, out, seed } => {
            demo::write_people_csv(&out, people, false, seed)?;
            Ok(Exit::Ok)
        }
        command => {
            let config = config::Config::load(&config_path)?;
            run_in_campaign(&config, command).await
        }
    }
}

async fn run_in_campaign(config: &config::Config, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Import(args) => import::run(config, &args).await,
        Command::Status { json } => status::run(config, json).await,
        Command::Check {
            json,
            dns: true,
            resolver,
        } => dns::run(config, resolver, json).await,
        Command::Check { json, .. } => check::run(config, json).await,
        Command::Preview(args) => preview::run(config, &args).await,
        Command::Send(args) => send::run(config, &args).await,
        Command::Bounces(args) => bounces::ingest::run_command(config, &args).await,
        Command::Resend(args) => resend::run(config, &args).await,
        Command::Export(ExportCommand::Postal { out, letters }) => {
            export_postal(config, out.as_deref(), letters.as_deref()).await
        }
        Command::Export(ExportCommand::Audit {
            format,
            out,
            events,
            mask_email,
        }) => {
            let request = export::AuditRequest {
                format,
                out: out.as_deref(),
                events,
                mask_email,
            };
            export::audit(config, &request).await
        }
        Command::Report { html } => report::run(config, &html).await,
        Command::Purge { yes } => purge::run(config, yes).await,
        Command::Lookup { query, json } => lookup::run(config, &query, json).await,
        Command::Serve { listen } => console::run(config, listen.as_deref()).await,
        Command::Adviser(command) => console::accounts::run(config, &command).await,
        Command::Init { .. } | Command::Demo { .. } | Command::GeneratePeople { .. } => {
            unreachable!("handled before loading a config")
        }
    }
}

/// `export postal`, with the text letters when `--letters` asks for them (the same engine as
/// `send`, so the paper letter says what the e-mail would have said).
async fn export_postal(
    config: &config::Config,
    out: Option<&std::path::Path>,
    letters_dir: Option<&std::path::Path>,
) -> anyhow::Result<Exit> {
    let Some(dir) = letters_dir else {
        return postal::run(config, out, None, None).await;
    };
    let letters = render::Letters::load(config)?;
    let text =
        |person: &person::Person| -> anyhow::Result<String> { Ok(letters.render(person)?.text) };
    postal::run(config, out, Some(dir), Some(&text)).await
}
