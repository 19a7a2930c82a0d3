//! `import`: loads the affected people from the source system's CSV export (or an SQLite extract).
//!
//! Rows are streamed, validated into domain types one by one, and written in batches. A bad row is
//! written to the rejects file with its line, ref, field and reason, and the import goes on
//! (`--strict` turns any bad row into "import nothing"). Re-importing the same file changes
//! nothing; `--update` applies changed fields. The full identifier and phone never reach the
//! database: only their masked tails do.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::cli::ImportArgs;
use crate::config::Config;
use crate::domain::{
    Category, Civility, Email, Invalid, MAX_FIELD_CHARS, PersonRef, check_header_safe,
    mask_identifier, mask_phone,
};
use crate::exit::{Exit, UsageError};
use crate::store::extract::{self, ExtractPages};
use crate::store::ledger;
use crate::store::people::{self, KnownPerson, NewPerson};

/// Rows per transaction: large enough to amortise the commit (each commit rewrites the index
/// pages it touched, and random notice ids touch many), small enough to keep memory flat.
const BATCH_ROWS: usize = 5000;

/// Rows per transaction (see `write_batches`).
const COMMIT_ROWS: usize = 50_000;

/// The columns the import knows; any other column is kept for templates as `extra.NAME`.
const KNOWN_COLUMNS: [&str; 15] = [
    "ref",
    "email",
    "alt_email",
    "civility",
    "first_name",
    "last_name",
    "language",
    "address_line1",
    "address_line2",
    "postcode",
    "city",
    "country",
    "phone",
    "identifier",
    "exposed",
];

/// One raw row from any source: its line (CSV) or row number (SQLite) and its values by column.
/// A value that is not UTF-8 arrives as `Err` so the rejection can name its column.
struct SourceRow {
    line: u64,
    values: Vec<Result<String, ()>>,
}

/// A refused value: which row, which field, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub person_ref: String,
    pub field: String,
    pub reason: String,
    /// What happened to the row: refused, or imported without the bad value.
    pub action: &'static str,
}

const REFUSED: &str = "refused";
/// The `exposed` value of a person whose categories of data are not known yet.
pub const EXPOSED_UNKNOWN: &str = "unknown";
const KEPT_AS_NO_EMAIL: &str = "imported as no_email (postal fallback)";

/// What one import did, for the summary line and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows whose ref exists with other values, left alone because `--update` was not given.
    pub changed_not_updated: u64,
    pub refused: u64,
    /// Rows refused (`refused` counts values too under `--strict`).
    pub refused_rows: u64,
    pub without_email: u64,
    pub language_fallbacks: BTreeMap<String, u64>,
    pub rejects_file: Option<PathBuf>,
}

pub async fn run(config: &Config, args: &ImportArgs) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, true).await?;
    let rejects_path = args.rejects.clone().unwrap_or_else(|| {
        let mut name = args.file.as_os_str().to_owned();
        name.push(".rejects.csv");
        PathBuf::from(name)
    });
    let options = ImportOptions {
        update: args.update,
        strict: args.strict,
        rejects_path,
        languages: available_languages(&config.campaign.letters),
        default_language: config.campaign.default_language.clone(),
    };
    let summary = match &args.table {
        Some(table) => import_sqlite(&pool, &args.file, table, &options).await?,
        None => import_csv(&pool, &args.file, &options).await?,
    };
    print_summary(&summary, &options);
    if args.strict && summary.refused > 0 {
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

fn print_summary(summary: &ImportSummary, options: &ImportOptions) {
    let mut line = format!(
        "import: {} rows: {} new, {} updated, {} unchanged, {} refused, {} without a usable e-mail address",
        summary.rows,
        summary.inserted,
        summary.updated,
        summary.unchanged,
        summary.refused,
        summary.without_email
    );
    if options.strict && summary.refused > 0 {
        line.push_str(" (--strict: nothing was imported)");
    }
    crate::exit::print_out(&line);
    if summary.changed_not_updated > 0 {
        crate::exit::print_out(&format!(
            "import: {} rows differ from what was imported before and were left as they were; re-run with --update to apply them",
            summary.changed_not_updated
        ));
    }
    for (language, count) in &summary.language_fallbacks {
        crate::exit::print_out(&format!(
            "import: {count} people asked for language {language:?}, which has no letters: they get the default ({})",
            options.default_language
        ));
    }
    if let Some(path) = &summary.rejects_file {
        crate::exit::print_out(&format!(
            "import: refused rows and values are listed in {}",
            path.display()
        ));
    }
}

pub struct ImportOptions {
    pub update: bool,
    pub strict: bool,
    pub rejects_path: PathBuf,
    pub languages: Vec<String>,
    pub default_language: String,
}

/// The languages that have letters: each subfolder of letters/ holding a subject template.
pub fn available_languages(letters: &Path) -> Vec<String> {
    let mut languages: Vec<String> = std::fs::read_dir(letters)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("subject.hbs").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    languages.sort();
    languages
}

pub async fn import_csv(
    pool: &SqlitePool,
    path: &Path,
    options: &ImportOptions,
) -> anyhow::Result<ImportSummary> {
    let file = std::fs::File::open(path)
        .map_err(|e| UsageError::new(format!("cannot read {}: {e}", path.display())))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let header = csv_header(&mut reader, &path.display().to_string())?;
    let mut source = Source::Csv {
        records: reader.into_byte_records(),
        name: path.display().to_string(),
    };
    let name = path.display().to_string();
    import_rows(pool, &name, header, &mut source, options).await
}

/// The header row's column names, lowercased, a byte order mark dropped.
fn csv_header<R: std::io::Read>(
    reader: &mut csv::Reader<R>,
    source: &str,
) -> Result<Vec<String>, UsageError> {
    let header = reader
        .byte_headers()
        .map_err(|e| UsageError::new(format!("{source}: cannot read the header row: {e}")))?;
    Ok(header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = String::from_utf8_lossy(name);
            // A UTF-8 byte order mark sticks to the first column's name.
            let name = if i == 0 {
                name.trim_start_matches('\u{feff}')
            } else {
                &name
            };
            name.trim().to_lowercase()
        })
        .collect())
}

/// What [`validate_csv_bytes`] made of a CSV: how many rows would be imported, and why the
/// others (or some of their values) would be refused.
#[derive(Debug, Default)]
pub struct CsvVerdict {
    pub valid_rows: usize,
    pub rejections: Vec<Rejection>,
}

/// Runs the import's CSV reader and row validation over `bytes`, without a database: the same
/// code an `import` runs before writing. For fuzzing and tests; an unreadable header or
/// column layout is an error, a bad row is a rejection.
pub fn validate_csv_bytes(bytes: &[u8]) -> Result<CsvVerdict, UsageError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = csv_header(&mut reader, "CSV")?;
    let columns = Columns::new(&header, "CSV")?;
    let options = ImportOptions {
        update: false,
        strict: false,
        rejects_path: PathBuf::new(),
        languages: vec!["en".into(), "fr".into()],
        default_language: "fr".into(),
    };
    let mut verdict = CsvVerdict::default();
    for record in reader.into_byte_records() {
        let record = record.map_err(|e| UsageError::new(format!("CSV: {e}")))?;
        let row = SourceRow {
            line: record.position().map_or(0, |p| p.line()),
            values: record
                .iter()
                .map(|v| std::str::from_utf8(v).map(str::to_owned).map_err(|_| ()))
                .collect(),
        };
        match columns.validate(&row, &options) {
            Ok((_, warnings)) => {
                verdict.valid_rows += 1;
                verdict.rejections.extend(warnings.rejections);
            }
            Err(problems) => verdict.rejections.extend(problems),
        }
    }
    Ok(verdict)
}

pub async fn import_sqlite(
    pool: &SqlitePool,
    path: &Path,
    table: &str,
    options: &ImportOptions,
) -> anyhow::Result<ImportSummary> {
    if !path.is_file() {
        return Err(
            UsageError::new(format!("cannot read {}: no such file", path.display())).into(),
        );
    }
    let source_options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let extract = sqlx::SqlitePool::connect_with(source_options)
        .await
        .with_context(|| format!("while opening the SQLite extract {}", path.display()))?;
    let header: Vec<String> = extract::table_columns(&extract, table)
        .await
        .with_context(|| {
            format!(
                "while reading the columns of {table:?} in {}",
                path.display()
            )
        })?
        .iter()
        .map(|name| name.trim().to_lowercase())
        .collect();
    if header.is_empty() {
        return Err(
            UsageError::new(format!("{}: no table named {table:?}", path.display())).into(),
        );
    }
    let name = format!("{} table {table}", path.display());
    let mut source = Source::Sqlite {
        extract,
        pages: ExtractPages::new(table),
        offset: 0,
        page: std::collections::VecDeque::new(),
        done: false,
    };
    import_rows(pool, &name, header, &mut source, options).await
}

/// Where rows come from. SQLite extracts are read a page at a time, so memory stays flat.
enum Source {
    Csv {
        records: csv::ByteRecordsIntoIter<std::io::BufReader<std::fs::File>>,
        name: String,
    },
    Sqlite {
        extract: SqlitePool,
        pages: ExtractPages,
        offset: i64,
        page: std::collections::VecDeque<SourceRow>,
        done: bool,
    },
}

const SQLITE_PAGE: i64 = 5000;

impl Source {
    async fn next(&mut self) -> Option<anyhow::Result<SourceRow>> {
        match self {
            Source::Csv { records, name } => records.next().map(|record| {
                record
                    .map(|record| SourceRow {
                        line: record.position().map_or(0, |p| p.line()),
                        values: record
                            .iter()
                            .map(|v| std::str::from_utf8(v).map(str::to_owned).map_err(|_| ()))
                            .collect(),
                    })
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))
            }),
            Source::Sqlite {
                extract,
                pages,
                offset,
                page,
                done,
            } => {
                if page.is_empty() && !*done {
                    let rows = match pages.page(extract, SQLITE_PAGE, *offset).await {
                        Ok(rows) => rows,
                        Err(e) => return Some(Err(e)),
                    };
                    *done = (rows.len() as i64) < SQLITE_PAGE;
                    for values in rows {
                        *offset += 1;
                        page.push_back(SourceRow {
                            line: *offset as u64,
                            values,
                        });
                    }
                }
                page.pop_front().map(Ok)
            }
        }
    }
}

/// The shared core: validate each row, write in batches, report refusals.
/// A batch of validated rows on its way to the writer, with the rejections met while reading it
/// (written to the rejects file by the writer, so the file keeps the order of the lines).
struct Batch {
    people: Vec<(u64, NewPerson)>,
    rejections: Vec<Rejection>,
}

/// How many batches may wait for the writer: one being written, one ready, one being read.
const BATCHES_IN_FLIGHT: usize = 1;

async fn import_rows(
    pool: &SqlitePool,
    source: &str,
    header: Vec<String>,
    rows: &mut Source,
    options: &ImportOptions,
) -> anyhow::Result<ImportSummary> {
    let columns = Columns::new(&header, source)?;
    let run_id = crate::store::campaign::start_run(pool, "import").await?;
    let imported = import_run(pool, source, &columns, rows, options, run_id).await;
    if let Err(error) = &imported {
        // Given up (a database held past the busy timeout, a full disk): the run says so.
        crate::store::campaign::finish_failed_run(pool, run_id, error).await;
    }
    imported
}

/// [`import_rows`] once its run is recorded.
async fn import_run(
    pool: &SqlitePool,
    source: &str,
    columns: &Columns,
    rows: &mut Source,
    options: &ImportOptions,
    run_id: i64,
) -> anyhow::Result<ImportSummary> {
    let mut summary = ImportSummary::default();
    // Reading and validating run beside the writes: the writer task takes each batch in order,
    // so a ref repeated in a later batch still finds the earlier one already written.
    let (batches, receiver) = tokio::sync::mpsc::channel::<Batch>(BATCHES_IN_FLIGHT);
    let writer = tokio::spawn(write_batches(
        pool.clone(),
        receiver,
        run_id,
        WriterOptions {
            update: options.update,
            strict: options.strict,
        },
        RejectsFile::new(&options.rejects_path),
    ));
    let read = read_batches(rows, columns, options, &mut summary, &batches).await;
    drop(batches);
    let written = writer.await.context("the import's writer stopped")?;
    // A reading error wins: the writer only stopped because the batches did.
    read?;
    let written = written?;
    summary.inserted = written.summary.inserted;
    summary.updated = written.summary.updated;
    summary.unchanged = written.summary.unchanged;
    summary.changed_not_updated = written.summary.changed_not_updated;
    summary.refused += written.summary.refused;
    summary.refused_rows += written.summary.refused;
    // --strict: one transaction for everything, rolled back if any row was refused.
    let mut rolled_back = 0;
    if let Some(tx) = written.strict_tx {
        if summary.refused > 0 {
            tx.rollback().await?;
            rolled_back = summary.rows.saturating_sub(summary.refused_rows);
            summary.inserted = 0;
            summary.updated = 0;
            summary.unchanged = 0;
            summary.changed_not_updated = 0;
        } else {
            tx.commit().await?;
        }
    }
    summary.rejects_file = written.rejects.finish()?;
    // Every row falls in exactly one of these counts, so `status` and the report can show the
    // import file's rows adding up (see `status::Imports`).
    let detail = serde_json::json!({
        "source": source, "rows": summary.rows, "inserted": summary.inserted,
        "updated": summary.updated, "unchanged": summary.unchanged,
        "not_updated": summary.changed_not_updated, "refused": summary.refused_rows,
        "rolled_back": rolled_back,
    });
    crate::store::campaign::finish_run(pool, run_id, "done", &detail.to_string()).await?;
    Ok(summary)
}

/// Reads and validates every row, handing full batches to the writer. Stops early, without an
/// error of its own, if the writer has stopped (its error is the one to report).
async fn read_batches(
    rows: &mut Source,
    columns: &Columns,
    options: &ImportOptions,
    summary: &mut ImportSummary,
    batches: &tokio::sync::mpsc::Sender<Batch>,
) -> anyhow::Result<()> {
    let new_batch = || Batch {
        people: Vec::with_capacity(BATCH_ROWS),
        rejections: Vec::new(),
    };
    let mut batch = new_batch();
    while let Some(row) = rows.next().await {
        let row = row?;
        summary.rows += 1;
        match columns.validate(&row, options) {
            Ok((person, warnings)) => {
                if person.email.is_none() {
                    summary.without_email += 1;
                }
                if let Some(fallback) = &warnings.language_fallback {
                    *summary
                        .language_fallbacks
                        .entry(fallback.clone())
                        .or_default() += 1;
                }
                if options.strict && !warnings.rejections.is_empty() {
                    summary.refused += warnings.rejections.len() as u64;
                    summary.refused_rows += 1;
                }
                batch.rejections.extend(warnings.rejections);
                batch.people.push((row.line, person));
            }
            Err(problems) => {
                summary.refused += 1;
                summary.refused_rows += 1;
                batch.rejections.extend(problems);
            }
        }
        if batch.people.len() >= BATCH_ROWS {
            let full = std::mem::replace(&mut batch, new_batch());
            if batches.send(full).await.is_err() {
                return Ok(());
            }
        }
    }
    if !batch.people.is_empty() || !batch.rejections.is_empty() {
        let _ = batches.send(batch).await;
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct WriterOptions {
    update: bool,
    strict: bool,
}

/// What the writer did, handed back when the batches end.
struct Written {
    summary: ImportSummary,
    rejects: RejectsFile,
    /// `--strict`: the one transaction holding everything, for the caller to commit or roll back.
    strict_tx: Option<sqlx::Transaction<'static, sqlx::Sqlite>>,
}

async fn write_batches(
    pool: SqlitePool,
    mut batches: tokio::sync::mpsc::Receiver<Batch>,
    run_id: i64,
    options: WriterOptions,
    mut rejects: RejectsFile,
) -> anyhow::Result<Written> {
    let mut summary = ImportSummary::default();
    // --strict: one transaction for everything. Otherwise a commit every COMMIT_ROWS rows: few
    // enough that the random notice ids' index pages are not rewritten to the log at every batch,
    // often enough that a crash costs little (the next import finds the committed rows unchanged).
    let mut tx = if options.strict {
        Some(crate::db::begin_write(&pool).await?)
    } else {
        None
    };
    let mut rows_in_tx = 0;
    while let Some(batch) = batches.recv().await {
        for rejection in &batch.rejections {
            rejects.write(rejection)?;
        }
        if batch.people.is_empty() {
            continue;
        }
        let open = match &mut tx {
            Some(open) => open,
            None => tx.insert(crate::db::begin_write(&pool).await?),
        };
        write_batch(
            open,
            &batch.people,
            run_id,
            options,
            &mut summary,
            &mut rejects,
        )
        .await?;
        rows_in_tx += batch.people.len();
        if !options.strict && rows_in_tx >= COMMIT_ROWS {
            if let Some(open) = tx.take() {
                open.commit()
                    .await
                    .context("while committing a batch of people")?;
            }
            rows_in_tx = 0;
        }
    }
    let strict_tx = match tx {
        Some(open) if !options.strict => {
            open.commit()
                .await
                .context("while committing a batch of people")?;
            None
        }
        other => other,
    };
    Ok(Written {
        summary,
        rejects,
        strict_tx,
    })
}

/// Writes one batch: new refs are inserted, known refs are left, touched or updated.
async fn write_batch(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    batch: &[(u64, NewPerson)],
    run_id: i64,
    options: WriterOptions,
    summary: &mut ImportSummary,
    rejects: &mut RejectsFile,
) -> anyhow::Result<()> {
    let now = crate::db::now_ms();
    let existing = existing_people(tx, batch).await?;
    let mut seen_in_batch: HashMap<&str, u64> = HashMap::new();
    let mut new_people = Vec::new();
    let mut touched = Vec::new();
    for (line, person) in batch.iter() {
        let duplicate_of = seen_in_batch.get(person.person_ref.as_str()).copied();
        let known = existing.get(person.person_ref.as_str());
        let is_duplicate = duplicate_of.is_some() || known.is_some_and(|k| k.import_run == run_id);
        if is_duplicate {
            summary.refused += 1;
            let first = duplicate_of.map_or(String::new(), |l| format!(" (first on line {l})"));
            rejects.write(&Rejection {
                line: *line,
                person_ref: person.person_ref.to_string(),
                field: "ref".into(),
                reason: format!("duplicate ref: already in this file{first}"),
                action: REFUSED,
            })?;
            continue;
        }
        seen_in_batch.insert(person.person_ref.as_str(), *line);
        match known {
            None => new_people.push(person),
            Some(known) if known.row_hash == person.row_hash => {
                summary.unchanged += 1;
                touched.push(known.id);
            }
            Some(known) if options.update => {
                let changed = known.changed_fields(person);
                ledger::update_person(tx, known.id, person, &changed, run_id, now).await?;
                summary.updated += 1;
            }
            Some(known) => {
                summary.changed_not_updated += 1;
                touched.push(known.id);
            }
        }
    }
    summary.inserted += ledger::insert_people(tx, &new_people, run_id, now).await?;
    ledger::touch_people(tx, &touched, run_id).await?;
    Ok(())
}

/// The people of a batch already stored, by ref.
async fn existing_people(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    batch: &[(u64, NewPerson)],
) -> anyhow::Result<HashMap<String, KnownPerson>> {
    let refs: Vec<&str> = batch
        .iter()
        .map(|(_, person)| person.person_ref.as_str())
        .collect();
    people::known_people(tx, &refs).await
}

/// Where each known column sits in the source's header.
struct Columns {
    positions: HashMap<&'static str, usize>,
    extras: Vec<(String, usize)>,
}

/// What a valid row still reports: a value that was dropped, a language that fell back.
#[derive(Default)]
struct Warnings {
    rejections: Vec<Rejection>,
    language_fallback: Option<String>,
}

impl Columns {
    fn new(header: &[String], source: &str) -> Result<Columns, UsageError> {
        let mut positions = HashMap::new();
        let mut extras = Vec::new();
        for (i, name) in header.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            match KNOWN_COLUMNS.iter().find(|known| **known == name) {
                Some(known) => {
                    if positions.insert(*known, i).is_some() {
                        return Err(UsageError::new(format!(
                            "{source}: the column {name:?} appears twice in the header"
                        )));
                    }
                }
                None => {
                    if !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        return Err(UsageError::new(format!(
                            "{source}: column {name:?}: extra column names may hold only letters, digits and '_' (templates use them as extra.NAME)"
                        )));
                    }
                    extras.push((name.clone(), i));
                }
            }
        }
        for required in ["ref", "exposed"] {
            if !positions.contains_key(required) {
                return Err(UsageError::new(format!(
                    "{source}: the header has no {required:?} column (known columns: {})",
                    KNOWN_COLUMNS.join(",")
                )));
            }
        }
        Ok(Columns { positions, extras })
    }

    fn value<'a>(&self, row: &'a SourceRow, column: &str) -> Option<&'a Result<String, ()>> {
        self.positions.get(column).and_then(|&i| row.values.get(i))
    }

    /// Turns a raw row into a person, or the list of what is wrong with it.
    fn validate(
        &self,
        row: &SourceRow,
        options: &ImportOptions,
    ) -> Result<(NewPerson, Warnings), Vec<Rejection>> {
        let mut problems = Vec::new();
        let raw_ref = match self.value(row, "ref") {
            Some(Ok(value)) => value.trim().to_owned(),
            _ => String::new(),
        };
        let mut refuse = |field: &str, reason: String| {
            problems.push(Rejection {
                line: row.line,
                person_ref: raw_ref.clone(),
                field: field.to_owned(),
                reason,
                action: REFUSED,
            });
        };
        // Text of a column: not UTF-8 is refused; empty means absent.
        let text = |column: &str, refuse: &mut dyn FnMut(&str, String)| -> Option<String> {
            match self.value(row, column) {
                None => None,
                Some(Err(())) => {
                    refuse(column, "is not valid UTF-8".into());
                    None
                }
                Some(Ok(value)) => {
                    let value = value.trim();
                    (!value.is_empty()).then(|| value.to_owned())
                }
            }
        };
        let person_ref = match text("ref", &mut refuse).map(|r| PersonRef::parse(&r)) {
            Some(Ok(person_ref)) => Some(person_ref),
            Some(Err(Invalid(reason))) => {
                refuse("ref", reason);
                None
            }
            None => {
                if !matches!(self.value(row, "ref"), Some(Err(()))) {
                    refuse(
                        "ref",
                        "is missing: every row needs the source system's key".into(),
                    );
                }
                None
            }
        };
        // Fields that reach a header or a greeting: no control characters at all.
        let header_field = |column: &str, refuse: &mut dyn FnMut(&str, String)| {
            let value = text(column, refuse)?;
            match check_header_safe(&value) {
                Ok(()) => Some(value),
                Err(Invalid(reason)) => {
                    refuse(column, reason);
                    None
                }
            }
        };
        let first_name = header_field("first_name", &mut refuse);
        let last_name = header_field("last_name", &mut refuse);
        let civility = header_field("civility", &mut refuse).and_then(|c| Civility::parse(&c));
        let language_raw = header_field("language", &mut refuse);
        // `unknown`: the categories are not known yet (stored as none); the letters say so and
        // promise to write again. An empty cell is still refused: it is more often a mistake.
        let exposed = match text("exposed", &mut refuse) {
            Some(raw) if raw.eq_ignore_ascii_case(EXPOSED_UNKNOWN) => Some(String::new()),
            raw => match raw.map(|e| Category::parse_list(&e)) {
                Some(Ok(list)) if !list.is_empty() => Some(Category::join(&list)),
                Some(Err(Invalid(reason))) => {
                    refuse("exposed", format!("{reason}, or {EXPOSED_UNKNOWN:?} alone"));
                    None
                }
                _ => {
                    refuse(
                        "exposed",
                        format!(
                            "is empty: list the categories of data involved, separated by ';', or write {EXPOSED_UNKNOWN:?} when they are not known yet"
                        ),
                    );
                    None
                }
            },
        };
        // Postal lines may hold line breaks (spreadsheet exports do): keep them as lines.
        let postal_field = |column: &str, refuse: &mut dyn FnMut(&str, String)| {
            let value = text(column, refuse)?
                .replace("\r\n", "\n")
                .replace('\r', "\n");
            if value.chars().count() > MAX_FIELD_CHARS {
                refuse(column, format!("longer than {MAX_FIELD_CHARS} characters"));
                return None;
            }
            if let Some(c) = value
                .chars()
                .find(|c| c.is_control() && *c != '\n' && *c != '\t')
            {
                refuse(
                    column,
                    format!("contains the control character U+{:04X}", c as u32),
                );
                return None;
            }
            Some(value)
        };
        let address_line1 = postal_field("address_line1", &mut refuse);
        let address_line2 = postal_field("address_line2", &mut refuse);
        let postcode = header_field("postcode", &mut refuse);
        let city = header_field("city", &mut refuse);
        let country = header_field("country", &mut refuse);
        let phone_masked = header_field("phone", &mut refuse).and_then(|p| mask_phone(&p));
        let identifier_masked =
            header_field("identifier", &mut refuse).and_then(|i| mask_identifier(&i));
        let mut extra = serde_json::Map::new();
        for (name, index) in &self.extras {
            match row.values.get(*index) {
                Some(Err(())) => refuse(name, "is not valid UTF-8".into()),
                Some(Ok(value)) => {
                    if value.chars().count() > MAX_FIELD_CHARS {
                        refuse(name, format!("longer than {MAX_FIELD_CHARS} characters"));
                    } else if value
                        .chars()
                        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
                    {
                        refuse(name, "contains a control character".into());
                    } else {
                        extra.insert(
                            name.clone(),
                            serde_json::Value::String(value.trim().to_owned()),
                        );
                    }
                }
                None => {
                    extra.insert(name.clone(), serde_json::Value::String(String::new()));
                }
            }
        }
        // An address that cannot be used is not a reason to forget the person: the law wants
        // them told, so they are kept without an address and reached by post.
        let mut warnings = Warnings::default();
        let mut email_field =
            |column: &str, refuse: &mut dyn FnMut(&str, String)| -> Option<Email> {
                let value = text(column, refuse)?;
                match Email::parse(&value) {
                    Ok(email) => Some(email),
                    Err(Invalid(reason)) => {
                        warnings.rejections.push(Rejection {
                            line: row.line,
                            person_ref: raw_ref.clone(),
                            field: column.to_owned(),
                            reason,
                            action: if column == "email" {
                                KEPT_AS_NO_EMAIL
                            } else {
                                "imported without this value"
                            },
                        });
                        None
                    }
                }
            };
        let email = email_field("email", &mut refuse);
        let alt_email = email_field("alt_email", &mut refuse);
        let (Some(person_ref), Some(exposed), true) = (person_ref, exposed, problems.is_empty())
        else {
            return Err(problems);
        };
        let language = match language_raw.map(|l| l.to_lowercase()) {
            None => options.default_language.clone(),
            Some(language) => {
                if !options.languages.contains(&language) {
                    warnings.language_fallback = Some(language.clone());
                }
                language
            }
        };
        let mut person = NewPerson {
            person_ref,
            email,
            alt_email,
            civility,
            first_name,
            last_name,
            language,
            address_line1,
            address_line2,
            postcode,
            city,
            country,
            phone_masked,
            identifier_masked,
            exposed,
            extra: serde_json::Value::Object(extra).to_string(),
            row_hash: String::new(),
        };
        person.row_hash = row_hash(&person);
        Ok((person, warnings))
    }
}

/// A fingerprint of what is stored for a person (masked values only), to see a changed row.
fn row_hash(person: &NewPerson) -> String {
    let mut hasher = Sha256::new();
    for value in person.field_values() {
        match value {
            Some(v) => {
                hasher.update(b"\x01");
                hasher.update(v.as_bytes());
            }
            None => hasher.update(b"\x00"),
        }
        hasher.update(b"\x1f");
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The rejects CSV, created (0600) at the first refused row only.
struct RejectsFile {
    path: PathBuf,
    writer: Option<csv::Writer<std::io::BufWriter<std::fs::File>>>,
}

impl RejectsFile {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            writer: None,
        }
    }

    fn write(&mut self, rejection: &Rejection) -> anyhow::Result<()> {
        if self.writer.is_none() {
            let file = crate::files::private_writer(&self.path).with_context(|| {
                format!("while creating the rejects file {}", self.path.display())
            })?;
            let mut writer = csv::Writer::from_writer(file);
            writer.write_record(["line", "ref", "field", "reason", "action"])?;
            self.writer = Some(writer);
        }
        if let Some(writer) = self.writer.as_mut() {
            writer.write_record([
                rejection.line.to_string().as_str(),
                &crate::export::neutralise_formula(&rejection.person_ref),
                &rejection.field,
                &crate::export::neutralise_formula(&rejection.reason),
                rejection.action,
            ])?;
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<Option<PathBuf>> {
        match self.writer {
            Some(mut writer) => {
                writer.flush()?;
                let mut inner = writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
                inner.flush()?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}
