//! `demo`: the whole job on synthetic people, with nothing to set up: a campaign folder, a CSV of
//! realistic French and English people (a few without e-mail, a few bad rows to show the rejects
//! file), the import, and the status. The same generator feeds the benchmarks.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::exit::Exit;

const FIRST_NAMES_FR: &[&str] = &[
    "Élodie",
    "Théo",
    "Chloé",
    "Noémie",
    "Jérôme",
    "Hélène",
    "François",
    "Maëlle",
    "Loïc",
    "Anaïs",
    "Zoé",
    "Gaël",
    "Cécile",
    "Benoît",
    "Inès",
    "Léa",
    "Hugo",
    "Camille",
    "Mathéo",
    "Agnès",
];
const LAST_NAMES_FR: &[&str] = &[
    "Dupont",
    "Lefèvre",
    "Moreau",
    "Girard",
    "Bérard",
    "N'Diaye",
    "Fournier",
    "Lemaître",
    "Müller",
    "Da Silva",
    "Chevalier",
    "Rousseau",
    "Benoît",
    "Hervé",
    "Lacroix",
    "Leroy",
    "Nguyen",
    "Faure",
    "Gauthier",
    "Perrin",
];
const FIRST_NAMES_EN: &[&str] = &[
    "Oliver", "Amelia", "Siobhán", "Liam", "Grace", "Noah", "Zoë", "Seán", "Olivia", "Jack",
];
const LAST_NAMES_EN: &[&str] = &[
    "O'Brien",
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Wilson",
    "Ó Súilleabháin",
    "Evans",
];
const STREETS: &[&str] = &[
    "rue de la République",
    "avenue Jean-Jaurès",
    "boulevard Victor-Hugo",
    "place de l'Église",
    "chemin des Écoliers",
    "allée des Tilleuls",
    "rue Pasteur",
    "impasse du Moulin",
];
const CITIES: &[(&str, &str)] = &[
    ("75011", "Paris"),
    ("69003", "Lyon"),
    ("13001", "Marseille"),
    ("31000", "Toulouse"),
    ("59000", "Lille"),
    ("44000", "Nantes"),
    ("67000", "Strasbourg"),
    ("97400", "Saint-Denis"),
];
const DOMAINS: &[&str] = &[
    "orange.fr",
    "gmail.com",
    "free.fr",
    "laposte.net",
    "hotmail.fr",
    "yahoo.fr",
    "sfr.fr",
    "wanadoo.fr",
    "outlook.fr",
    "exemple.fr",
];
const EXPOSED_SETS: &[&str] = &[
    "name;email;postal;phone;identifier",
    "name;email;postal;phone;identifier",
    "name;email;phone;identifier",
    "name;email;identifier",
    "name;email;postal;identifier;status",
];

/// The header every generated file has.
pub const HEADER: &str = "ref,email,civility,first_name,last_name,language,address_line1,address_line2,postcode,city,country,phone,identifier,exposed,agency";

/// Writes `people` synthetic rows. With `bad_rows`, about one row in 100 (at least three) is
/// broken on purpose in a different way, to show what the rejects file says.
pub fn write_people_csv(path: &Path, people: u64, bad_rows: bool, seed: u64) -> anyhow::Result<()> {
    let mut out = crate::files::private_writer(path)
        .with_context(|| format!("while creating {}", path.display()))?;
    let mut rng = StdRng::seed_from_u64(seed);
    writeln!(out, "{HEADER}")?;
    // About one row in a hundred, at least three and at most fifty, each broken differently.
    let bad_every = (people / (people / 100).clamp(3, 50)).max(1);
    for n in 1..=people {
        let english = rng.random_ratio(1, 8);
        let (first, last) = if english {
            (
                pick(&mut rng, FIRST_NAMES_EN),
                pick(&mut rng, LAST_NAMES_EN),
            )
        } else {
            (
                pick(&mut rng, FIRST_NAMES_FR),
                pick(&mut rng, LAST_NAMES_FR),
            )
        };
        let civility = match rng.random_range(0..10) {
            0..=3 => "M.",
            4..=8 => "Mme",
            _ => "",
        };
        let without_email = rng.random_ratio(1, 50);
        let email = if without_email {
            String::new()
        } else {
            format!(
                "{}.{}{}@{}",
                ascii_fold(first),
                ascii_fold(last),
                n,
                pick(&mut rng, DOMAINS)
            )
        };
        let (postcode, city) = CITIES[rng.random_range(0..CITIES.len())];
        let mut row = vec![
            format!("DE{n:08}"),
            email,
            civility.to_owned(),
            first.to_owned(),
            last.to_owned(),
            if english { "en" } else { "fr" }.to_owned(),
            format!("{} {}", rng.random_range(1..200), pick(&mut rng, STREETS)),
            if rng.random_ratio(1, 5) {
                format!("Bâtiment {}", rng.random_range(1..9))
            } else {
                String::new()
            },
            postcode.to_owned(),
            city.to_owned(),
            "France".to_owned(),
            format!(
                "06 {:02} {:02} {:02} {:02}",
                rng.random_range(0..100),
                rng.random_range(0..100),
                rng.random_range(0..100),
                rng.random_range(0..100)
            ),
            format!(
                "{:07}{}",
                rng.random_range(0..10_000_000),
                (b'A' + rng.random_range(0..26)) as char
            ),
            pick(&mut rng, EXPOSED_SETS).to_owned(),
            format!("Agence de {city}"),
        ];
        if bad_rows && n % bad_every == 0 {
            break_row(&mut row, n / bad_every);
        }
        let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
        writer.write_record(&row)?;
        out.write_all(&writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    }
    out.flush()?;
    Ok(())
}

/// The demo's deadline, counted from the day it runs: its letters all go today, well before it,
/// so the demo ends without a deadline warning whatever the date.
const DEMO_NOTIFY_BY_DAYS: i64 = 28;

/// Rewrites `notify_by = "..."` of the `[incident]` table `init` wrote.
fn set_notify_by(config: &Path, day: chrono::NaiveDate) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("while reading {}", config.display()))?;
    let mut found = false;
    let rewritten: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("notify_by = ") {
                found = true;
                format!("notify_by = \"{day}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    anyhow::ensure!(found, "{} has no notify_by line", config.display());
    crate::files::write_private(config, (rewritten.join("\n") + "\n").as_bytes())
        .with_context(|| format!("while writing {}", config.display()))
}

/// One kind of damage each time, so the demo shows every reason once.
fn break_row(row: &mut [String], which: u64) {
    match which % 5 {
        0 => row[1] = "jean.dupont@@exemple".into(),
        1 => row[0] = String::new(),
        2 => row[13] = "name;password".into(),
        3 => row[4] = "Dupont\r\nBcc: everyone@exemple.fr".into(),
        _ => row[1] = String::new(),
    }
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

/// "Élodie O'Brien" → "elodie.obrien": plausible mailbox names from accented ones.
fn ascii_fold(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'à' | 'á' | 'â' | 'ä' | 'À' => Some('a'),
            'é' | 'è' | 'ê' | 'ë' | 'É' => Some('e'),
            'î' | 'ï' | 'í' => Some('i'),
            'ô' | 'ö' | 'ó' | 'Ó' => Some('o'),
            'ù' | 'û' | 'ü' | 'ú' => Some('u'),
            'ç' => Some('c'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

pub async fn run(dir: Option<&Path>, people: u64) -> anyhow::Result<Exit> {
    let dir: PathBuf = dir.map_or_else(|| PathBuf::from("breachmail-demo"), Path::to_path_buf);
    crate::init::create_campaign(&dir).await?;
    let notify_by =
        (crate::clock::now() + chrono::Duration::days(DEMO_NOTIFY_BY_DAYS)).date_naive();
    set_notify_by(&dir.join("breachmail.toml"), notify_by)?;
    crate::exit::print_out(&format!("demo: created the campaign in {}", dir.display()));
    let csv_path = dir.join("people.csv");
    write_people_csv(&csv_path, people, true, 2025)?;
    crate::exit::print_out(&format!(
        "demo: wrote {people} synthetic people to {}",
        csv_path.display()
    ));
    let config = crate::config::Config::load(&dir.join("breachmail.toml"))?;
    let import = crate::cli::ImportArgs {
        file: csv_path,
        table: None,
        update: false,
        rejects: None,
        strict: false,
    };
    crate::import::run(&config, &import).await?;
    // The demo's people all render; a failure here would be a bug in the default letters.
    let checked = crate::check::run(&config, false).await?;
    let preview = crate::cli::PreviewArgs {
        out: dir.join("preview"),
        limit: None,
        all: false,
        refs: Vec::new(),
    };
    crate::preview::run(&config, &preview).await?;
    crate::exit::print_out(&format!(
        "demo: open the letters in {} (one per language and set of exposed data; manifest.csv lists them)",
        preview.out.display()
    ));
    // The demo has nothing to protect from a flood: send as fast as the folder takes it.
    let mut unlimited = config.clone();
    unlimited.rate.per_second = 0;
    let send = crate::cli::SendArgs {
        limit: None,
        max_duration: None,
    };
    crate::send::run(&unlimited, &send).await?;
    crate::exit::print_out(&format!(
        "demo: every letter sent is in {} (one .eml each)",
        dir.join("outbox").display()
    ));
    crate::status::run(&config, false).await?;
    if checked != Exit::Ok {
        return Ok(checked);
    }
    Ok(Exit::Ok)
}
