//! The whole command line in one place: doc comments become `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Tell every person hit by a personal-data breach what happened to their data (GDPR Art. 34),
/// by e-mail, one personalised letter each.
#[derive(Debug, Parser)]
#[command(name = "breachmail", version, about, long_about = None)]
pub struct Cli {
    /// The campaign's configuration file [default: $BREACHMAIL_CONFIG or ./breachmail.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Only warnings and errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail on stderr (repeat for debug output)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The format of log lines on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a campaign folder: configuration, letters (FR and EN), empty database
    Init {
        /// The new folder (must be empty or not exist)
        dir: PathBuf,
    },
    /// Try the whole job on synthetic people: init, import, check, preview, send to files, status
    Demo {
        /// Where to create the demo campaign [default: ./breachmail-demo]
        dir: Option<PathBuf>,
        /// How many synthetic people
        #[arg(long, default_value_t = 200)]
        people: u64,
    },
    /// Load the affected people from a CSV file (or an SQLite extract with --table)
    Import(ImportArgs),
    /// Render every letter still to send, in memory, strictly; list each failure by ref
    /// (with --dns: check the sending domain's DNS records instead)
    Check {
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
        /// Check the DNS records receivers check (DKIM keys, SPF, DMARC and alignment, MX), print
        /// the record to publish for each problem, and remember the result for status and send
        #[arg(long)]
        dns: bool,
        /// The DNS server to ask (IP:PORT) instead of the system's resolver
        #[arg(long, value_name = "IP:PORT", requires = "dns")]
        resolver: Option<std::net::SocketAddr>,
    },
    /// Write the exact messages as files (<ref>.<generation>.eml, named as by file://, and manifest.csv); nothing is sent
    Preview(PreviewArgs),
    /// Send what is due, record every outcome, and exit (run it from cron)
    Send(SendArgs),
    /// Read what came back (mbox files, maildir folders, .eml files, or the mailbox over IMAP)
    /// and record it: bounces, delays, complaints, auto-replies, people's replies
    Bounces(BouncesArgs),
    /// Put people back to pending as a new attempt generation, to their current address
    Resend(ResendArgs),
    /// Counts by state, last runs, errors, estimated finish
    Status {
        /// Print the status as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Export the evidence or the postal fallback
    #[command(subcommand)]
    Export(ExportCommand),
    /// Write a self-contained HTML report for management and the regulator
    Report {
        /// The HTML file to write
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
    /// For the helpline: look a notice up by notice number, ref or e-mail address (genuine or not,
    /// who, the letter's state, every attempt and bounce)
    Lookup {
        /// A notice number (any case, with or without dashes), a ref, or an e-mail address
        query: String,
        /// Print the answer as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// The helpline's web console for advisers, on this campaign's database
    Serve {
        /// The address to listen on [default: console.listen, 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// The helpline advisers' accounts (for the web console)
    #[command(subcommand)]
    Adviser(AdviserCommand),
    /// After the campaign: erase personal fields, keep counts, hashes, times and notice ids
    Purge {
        /// Confirm that the campaign is over and personal fields may be erased
        #[arg(long)]
        yes: bool,
    },
    /// Write a CSV of synthetic people, for benchmarks (no campaign needed)
    #[command(hide = true)]
    GeneratePeople {
        /// How many people
        #[arg(long, default_value_t = 340_000)]
        people: u64,
        /// The CSV file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The random seed: the same seed gives the same file
        #[arg(long, default_value_t = 2025)]
        seed: u64,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV file (UTF-8, header row), or an SQLite file with --table
    pub file: PathBuf,
    /// Read this table of an SQLite extract instead of a CSV file
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// Update the changed fields of people already imported (same ref)
    #[arg(long)]
    pub update: bool,
    /// Where to write the refused rows [default: <FILE>.rejects.csv]
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Import nothing if any row is refused (exit 1)
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct BouncesArgs {
    /// mbox files, maildir folders or .eml files [default: the mailbox of bounces.imap]
    pub paths: Vec<PathBuf>,
    /// Read the bounce mailbox over IMAP: imaps://USER@HOST[:PORT]/FOLDER, or imap://... upgraded
    /// with STARTTLS; the password comes from BREACHMAIL_BOUNCES_PASSWORD [default: bounces.imap]
    #[arg(long, value_name = "URL", conflicts_with = "paths")]
    pub imap: Option<String>,
    /// IMAP: move each message, once recorded, to this folder (created if missing) instead of
    /// flagging it \Seen [default: bounces.move_to]
    #[arg(long, value_name = "FOLDER")]
    pub move_to: Option<String>,
    /// IMAP: delete each message once recorded, instead of moving or flagging it
    #[arg(long, conflicts_with = "move_to")]
    pub delete: bool,
    /// Write people's replies into this folder, one .eml each, owner-only [default:
    /// bounces.replies_to]
    #[arg(long, value_name = "DIR")]
    pub replies_to: Option<PathBuf>,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// IMAP: messages fetched, recorded and moved together
    #[arg(long, value_name = "N", default_value_t = 500, hide = true)]
    pub imap_batch: usize,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The folder to write into
    #[arg(long, value_name = "DIR", default_value = "preview")]
    pub out: PathBuf,
    /// At most this many messages
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Everyone, not only those still to send
    #[arg(long)]
    pub all: bool,
    /// These people only (repeatable)
    #[arg(long = "ref", value_name = "REF")]
    pub refs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Send at most N messages in this run
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Stop claiming new work after this long (e.g. 4m), finish what is in flight
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    pub max_duration: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
// The struct's own group would take in --changed-only too and forbid it next to --bounced:
// only the three ways of naming people are exclusive.
#[group(skip)]
#[command(group(clap::ArgGroup::new("who").required(true).multiple(false)))]
pub struct ResendArgs {
    /// Everyone whose letter bounced
    #[arg(long, group = "who")]
    pub bounced: bool,
    /// Everyone whose delivery failed
    #[arg(long, group = "who")]
    pub failed: bool,
    /// These people (repeatable)
    #[arg(long = "ref", value_name = "REF", group = "who")]
    pub refs: Vec<String>,
    /// Only those whose address changed since it failed
    #[arg(long)]
    pub changed_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// One row per person: what was sent when, and the outcome
    Audit {
        #[arg(long, value_enum, default_value_t = AuditFormat::Csv)]
        format: AuditFormat,
        /// The file to write [default: stdout]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// One row per event: the full timeline
        #[arg(long)]
        events: bool,
        /// Mask e-mail addresses (j***@example.fr)
        #[arg(long)]
        mask_email: bool,
    },
    /// Everyone not reached by e-mail, with postal address, for the postal service
    Postal {
        /// The CSV file to write [default: stdout]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also write each person's text letter into this folder, ready to print
        #[arg(long, value_name = "DIR")]
        letters: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdviserCommand {
    /// Create an adviser, or give one a new password: the password is read from stdin (one line)
    Add {
        /// The adviser's login, as the access log will name them
        login: String,
        /// May open the supervisor's counters
        #[arg(long)]
        supervisor: bool,
        /// No password: this adviser logs in only through the reverse proxy (console.proxy_header)
        #[arg(long)]
        proxy_only: bool,
    },
    /// Disable an adviser and end their sessions (their name stays in the records)
    Disable {
        /// The adviser's login
        login: String,
    },
    /// List the advisers
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    Csv,
    Jsonl,
}

fn parse_duration_arg(value: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(value)
        .ok_or_else(|| format!("{value:?} is not a duration such as 30s, 4m or 1h"))
}
