//! `import` as the operator meets it: a source export with every kind of bad row, the rejects
//! file that explains each one, what reaches the database (and what never does), re-import,
//! `--update`, `--strict` and SQLite extracts. Each test runs the real binary on a new campaign.

mod support;

use sqlx::Row;
use support::campaign::{Campaign, read_rejects, stderr, stdout};
use support::files::{contains, mode};

const HEADER: &str = "ref,email,civility,first_name,last_name,language,address_line1,address_line2,postcode,city,country,phone,identifier,exposed,agency";

/// The full identifier and phone of the first person: neither may ever be stored.
const IDENTIFIER: &str = "QX7731902K";
const PHONE: &str = "06 12 34 56 78";

/// A source export with one row of each kind, good and bad; the comment is the line each row
/// starts on (quoted line breaks make some rows two lines long).
fn messy_export() -> Vec<u8> {
    let long_name = "A".repeat(1001);
    let mut csv = Vec::new();
    csv.extend_from_slice(b"\xEF\xBB\xBF"); // a spreadsheet's BOM
    csv.extend_from_slice(HEADER.as_bytes());
    csv.extend_from_slice(b"\n");
    let rows: Vec<Vec<u8>> = vec![
        // 2: valid
        format!("A001,jean.dupont@exemple.fr,M.,Jean,Dupont,fr,12 rue Pasteur,,75011,Paris,France,{PHONE},{IDENTIFIER},name;email;phone;identifier,Agence de Paris").into_bytes(),
        // 3: no ref
        b",sans.ref@exemple.fr,Mme,Anne,Sansref,fr,,,,,,,,name;email,".to_vec(),
        // 4: the same ref as line 2
        b"A001,autre@exemple.fr,Mme,Autre,Personne,fr,,,,,,,,name,".to_vec(),
        // 5: invalid address: kept as no_email, and listed
        b"A004,jean.dupont@@exemple,M.,Marc,Arobase,fr,3 place de l'Eglise,,69003,Lyon,France,,,name;email;postal,".to_vec(),
        // 6: internationalised domain: valid
        "A005,élodie@société.fr,Mme,Élodie,Lefèvre,fr,,,,,,,,name;email,".as_bytes().to_vec(),
        // 7-8: a line break in a name would inject a header
        b"A006,bcc@exemple.fr,M.,Eve,\"Dupont\r\nBcc: everyone@exemple.fr\",fr,,,,,,,,name;email,".to_vec(),
        // 9: a field over 1,000 characters
        format!("A007,long@exemple.fr,M.,{long_name},Long,fr,,,,,,,,name;email,").into_bytes(),
        // 10: a category that does not exist
        b"A008,cat@exemple.fr,M.,Paul,Categorie,fr,,,,,,,,name;password,".to_vec(),
        // 11: bytes that are not UTF-8 (Latin-1 "Orl\xe9ans")
        b"A009,latin@exemple.fr,M.,Luc,Latin,fr,,,45000,Orl\xe9ans,France,,,name;email,".to_vec(),
        // 12-13: a postal address on two lines, as spreadsheets export it: valid
        b"A010,postal@exemple.fr,Mme,Rose,Postale,fr,\"Residence les Pins\nBatiment B\",,31000,Toulouse,France,,,name;postal,".to_vec(),
        // 14: a language without letters: default letter, with a note
        b"A011,hans@exemple.de,M.,Hans,Muller,de,,,,,,,,name;email,".to_vec(),
        // 15: no address at all: no_email
        b"A012,,Mme,Nina,Sansmail,fr,8 rue Haute,,59000,Lille,France,,,name;postal,".to_vec(),
        // 16, 17: two people sharing one address: both kept
        b"A013,famille@exemple.fr,M.,Pierre,Famille,fr,,,,,,,,name;email,".to_vec(),
        b"A014,Famille@Exemple.FR,Mme,Marie,Famille,en,,,,,,,,name;email,".to_vec(),
    ];
    for row in rows {
        csv.extend_from_slice(&row);
        csv.extend_from_slice(b"\n");
    }
    csv
}

const IMPORTED: [&str; 8] = [
    "A001", "A004", "A005", "A010", "A011", "A012", "A013", "A014",
];

async fn people_refs(pool: &sqlx::SqlitePool) -> Vec<String> {
    sqlx::query_scalar("SELECT ref FROM people ORDER BY ref")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn state_of(pool: &sqlx::SqlitePool, person_ref: &str) -> String {
    sqlx::query_scalar(
        "SELECT d.state FROM deliveries d JOIN people p ON p.id = d.person_id WHERE p.ref = ?",
    )
    .bind(person_ref)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn count(pool: &sqlx::SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn every_bad_row_is_explained_and_the_good_ones_are_imported() {
    let campaign = Campaign::new();
    let export = campaign.write_outside("people.csv", messy_export());
    let output = campaign.import(&export, &[]);
    let said = stdout(&output);
    assert!(said.contains("6 refused"), "{said}");
    assert!(
        said.contains("1 people asked for language \"de\"") && said.contains("default (fr)"),
        "the language fallback is noted: {said}"
    );

    let rejects_path = campaign.outside("people.csv.rejects.csv");
    assert_eq!(mode(&rejects_path), 0o600, "the rejects file is owner-only");
    let rejects = read_rejects(&rejects_path);
    let expect = [
        ("3", "", "ref", "missing", "refused"),
        ("4", "A001", "ref", "duplicate", "refused"),
        (
            "5",
            "A004",
            "email",
            "",
            "imported as no_email (postal fallback)",
        ),
        ("7", "A006", "last_name", "control character", "refused"),
        ("9", "A007", "first_name", "longer than 1000", "refused"),
        ("10", "A008", "exposed", "password", "refused"),
        ("11", "A009", "city", "UTF-8", "refused"),
    ];
    for (line, person_ref, field, reason, action) in expect {
        let found = rejects
            .iter()
            .find(|r| r[0] == line)
            .unwrap_or_else(|| panic!("line {line} is not in the rejects: {rejects:?}"));
        assert_eq!(found[1], person_ref, "{found:?}");
        assert_eq!(found[2], field, "{found:?}");
        assert!(found[3].contains(reason), "{found:?} should say {reason:?}");
        assert_eq!(found[4], action, "{found:?}");
    }
    assert_eq!(rejects.len(), expect.len(), "{rejects:?}");

    let pool = campaign.db().await;
    assert_eq!(people_refs(&pool).await, IMPORTED);
    assert_eq!(state_of(&pool, "A001").await, "pending");
    assert_eq!(state_of(&pool, "A004").await, "no_email");
    assert_eq!(state_of(&pool, "A005").await, "pending");
    assert_eq!(state_of(&pool, "A012").await, "no_email");
    assert_eq!(state_of(&pool, "A013").await, "pending");
    assert_eq!(state_of(&pool, "A014").await, "pending");

    let row = sqlx::query(
        "SELECT email, email_domain, first_name, civility, exposed, extra, phone_masked, identifier_masked
         FROM people WHERE ref = 'A001'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>(0), "jean.dupont@exemple.fr");
    assert_eq!(row.get::<String, _>(1), "exemple.fr");
    assert_eq!(row.get::<String, _>(2), "Jean");
    assert!(row.get::<Option<String>, _>(3).is_some());
    assert_eq!(row.get::<String, _>(4), "name;email;phone;identifier");
    let extra: serde_json::Value = serde_json::from_str(&row.get::<String, _>(5)).unwrap();
    assert_eq!(extra["agency"], "Agence de Paris");
    assert!(row.get::<String, _>(6).ends_with("78"));
    assert_eq!(row.get::<String, _>(7), "…902K");

    let idn: String = sqlx::query_scalar("SELECT email_domain FROM people WHERE ref = 'A005'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(idn, "société.fr");
    let address: String = sqlx::query_scalar("SELECT address_line1 FROM people WHERE ref = 'A010'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        address, "Residence les Pins\nBatiment B",
        "kept as two lines"
    );
    // The language asked for is kept; the letter falls back to the default at rendering.
    let language: String = sqlx::query_scalar("SELECT language FROM people WHERE ref = 'A011'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(language, "de");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM events WHERE kind = 'imported'").await,
        8,
        "one event per imported person"
    );
}

#[tokio::test]
async fn neither_the_full_identifier_nor_the_full_phone_reaches_the_database_file() {
    let campaign = Campaign::new();
    let export = campaign.write_outside("people.csv", messy_export());
    campaign.import(&export, &[]);
    let mut bytes = std::fs::read(campaign.database()).unwrap();
    let wal = campaign.dir.join("breachmail.db-wal");
    if wal.exists() {
        bytes.extend(std::fs::read(&wal).unwrap());
    }
    assert!(
        !contains(&bytes, IDENTIFIER.as_bytes()),
        "the full identifier is stored"
    );
    assert!(
        !contains(&bytes, PHONE.as_bytes()),
        "the full phone number is stored"
    );
    assert!(
        !contains(&bytes, b"0612345678"),
        "the phone's digits are stored"
    );
    assert!(
        !contains(&bytes, b"7731902"),
        "most of the identifier is stored"
    );
    // The check above would pass on an empty file: the person is really there.
    assert!(contains(&bytes, "…902K".as_bytes()));
    assert!(contains(&bytes, b"jean.dupont@exemple.fr"));
}

#[tokio::test]
async fn importing_the_same_file_again_changes_nothing() {
    let campaign = Campaign::new();
    let export = campaign.write_outside("people.csv", messy_export());
    campaign.import(&export, &[]);
    let pool = campaign.db().await;
    let events = count(&pool, "SELECT count(*) FROM events").await;
    let notice_ids: Vec<String> = sqlx::query_scalar("SELECT notice_id FROM people ORDER BY ref")
        .fetch_all(&pool)
        .await
        .unwrap();

    let output = campaign.import(&export, &[]);
    let said = stdout(&output);
    assert!(said.contains("0 new, 0 updated, 8 unchanged"), "{said}");
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, events);
    assert_eq!(people_refs(&pool).await, IMPORTED);
    let again: Vec<String> = sqlx::query_scalar("SELECT notice_id FROM people ORDER BY ref")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(again, notice_ids, "notice ids never change");
    // The duplicate inside the file is still a duplicate the second time.
    let rejects = read_rejects(&campaign.outside("people.csv.rejects.csv"));
    assert!(
        rejects
            .iter()
            .any(|r| r[0] == "4" && r[3].contains("duplicate"))
    );
}

#[tokio::test]
async fn update_applies_changed_fields_and_records_them() {
    let campaign = Campaign::new();
    let first = campaign.write_outside(
        "v1.csv",
        "ref,email,first_name,city,exposed\n\
         B1,b1@exemple.fr,Jean,Paris,name;email\n\
         B2,,Nina,Lille,name;postal\n\
         B3,b3@exemple.fr,Paul,Lyon,name;email\n",
    );
    campaign.import(&first, &[]);
    let second = campaign.write_outside(
        "v2.csv",
        "ref,email,first_name,city,exposed\n\
         B1,b1@exemple.fr,Jean,Marseille,name;email\n\
         B2,nina@exemple.fr,Nina,Lille,name;postal\n\
         B3,b3@exemple.fr,Paul,Lyon,name;email\n",
    );

    // Without --update a changed row is left alone, and the operator is told.
    let output = campaign.import(&second, &[]);
    assert!(stdout(&output).contains("--update"), "{}", stdout(&output));
    let pool = campaign.db().await;
    let city: String = sqlx::query_scalar("SELECT city FROM people WHERE ref = 'B1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(city, "Paris");

    let output = campaign.import(&second, &["--update"]);
    assert!(
        stdout(&output).contains("2 updated, 1 unchanged"),
        "{}",
        stdout(&output)
    );
    let city: String = sqlx::query_scalar("SELECT city FROM people WHERE ref = 'B1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(city, "Marseille");
    assert_eq!(state_of(&pool, "B1").await, "pending");
    assert_eq!(state_of(&pool, "B2").await, "pending", "gained an address");
    let delivery_email: String = sqlx::query_scalar(
        "SELECT d.email FROM deliveries d JOIN people p ON p.id = d.person_id WHERE p.ref = 'B2'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(delivery_email, "nina@exemple.fr");

    let updates = sqlx::query(
        "SELECT p.ref, e.from_state, e.to_state, e.detail FROM events e JOIN people p ON p.id = e.person_id
         WHERE e.kind = 'updated' ORDER BY p.ref",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(updates.len(), 2);
    let b1 = &updates[0];
    assert_eq!(b1.get::<String, _>(0), "B1");
    let detail: String = b1.get(3);
    assert!(detail.contains("city"), "{detail}");
    assert!(!detail.contains("email"), "{detail}");
    assert!(
        !detail.contains("Marseille"),
        "names the fields, never the values: {detail}"
    );
    let b2 = &updates[1];
    assert_eq!(b2.get::<String, _>(0), "B2");
    assert_eq!(b2.get::<String, _>(1), "no_email");
    assert_eq!(b2.get::<String, _>(2), "pending");
    assert!(b2.get::<String, _>(3).contains("email"));
    assert!(!b2.get::<String, _>(3).contains("nina@"));
}

#[tokio::test]
async fn strict_imports_nothing_when_a_row_is_bad() {
    let campaign = Campaign::new();
    let export = campaign.write_outside("people.csv", messy_export());
    let output = campaign.run(&["import", export.to_str().unwrap(), "--strict"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stdout(&output).contains("nothing was imported"));
    let pool = campaign.db().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM people").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM deliveries").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 0);
    let rejects = read_rejects(&campaign.outside("people.csv.rejects.csv"));
    assert_eq!(rejects.len(), 7, "every bad row is still explained");
}

#[tokio::test]
async fn strict_counts_an_invalid_address_as_a_bad_row() {
    let campaign = Campaign::new();
    let export = campaign.write_outside(
        "people.csv",
        "ref,email,exposed\nC1,c1@exemple.fr,email\nC2,not-an-address,email\n",
    );
    let output = campaign.run(&["import", export.to_str().unwrap(), "--strict"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(campaign.status()["total"], 0);
    // The rolled-back rows still add up: 1 refused + 1 rolled back, nobody imported.
    let imports = &campaign.status()["imports"];
    assert_eq!(imports["ok"], true, "{imports}");
    assert_eq!(imports["rows"], 2, "{imports}");
    assert_eq!(imports["refused"], 1, "{imports}");
    assert_eq!(imports["rolled_back"], 1, "{imports}");

    let clean = campaign.write_outside("clean.csv", "ref,email,exposed\nC1,c1@exemple.fr,email\n");
    campaign.import(&clean, &["--strict"]);
    assert_eq!(campaign.status()["total"], 1);
    let status = campaign.status();
    assert_eq!(status["imports"]["ok"], true, "{status}");
    assert_eq!(status["imports"]["rows"], 3, "{status}");
    assert_eq!(status["imports"]["inserted"], 1, "{status}");
    assert!(!campaign.outside("clean.csv.rejects.csv").exists());
}

#[tokio::test]
async fn the_rejects_file_can_be_named() {
    let campaign = Campaign::new();
    let export = campaign.write_outside("people.csv", messy_export());
    let rejects = campaign.outside("refused.csv");
    campaign.import(&export, &["--rejects", rejects.to_str().unwrap()]);
    assert_eq!(read_rejects(&rejects).len(), 7);
    assert!(!campaign.outside("people.csv.rejects.csv").exists());
}

#[tokio::test]
async fn many_rows_are_imported_across_batches() {
    // More than one transaction (5,000 rows) and several INSERT statements (1,000 rows) each.
    const ROWS: usize = 6_100;
    let campaign = Campaign::new();
    let mut csv = String::from("ref,email,exposed\n");
    for n in 0..ROWS {
        csv.push_str(&format!("R{n:05},r{n}@exemple.fr,email\n"));
    }
    // A duplicate far from its first appearance, in another batch.
    csv.push_str("R00007,again@exemple.fr,email\n");
    let export = campaign.write_outside("big.csv", csv);
    campaign.import(&export, &[]);
    // status fails unless every person has exactly one delivery.
    assert_eq!(campaign.status()["total"], ROWS);
    let pool = campaign.db().await;
    let imported = count(&pool, "SELECT count(*) FROM events WHERE kind = 'imported'").await;
    assert_eq!(imported, ROWS as i64);
    let mismatched = count(
        &pool,
        "SELECT count(*) FROM deliveries d JOIN people p ON p.id = d.person_id WHERE d.email IS NOT p.email",
    )
    .await;
    assert_eq!(mismatched, 0, "each delivery belongs to its own person");
    let rejects = read_rejects(&campaign.outside("big.csv.rejects.csv"));
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0][0], (ROWS + 2).to_string());
    assert_eq!(rejects[0][1], "R00007");
}

#[tokio::test]
async fn an_sqlite_extract_is_imported_from_a_table() {
    let campaign = Campaign::new();
    let extract_path = campaign.outside("extract.db");
    let extract = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&extract_path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::query(
        "CREATE TABLE people_export (ref TEXT, email TEXT, first_name TEXT, phone INTEGER,
                                     identifier TEXT, exposed TEXT, agency TEXT)",
    )
    .execute(&extract)
    .await
    .unwrap();
    type ExtractRow<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        Option<i64>,
        &'a str,
        &'a str,
    );
    let rows: [ExtractRow; 4] = [
        (
            "S1",
            Some("s1@exemple.fr"),
            "Aline",
            Some(612345678),
            "ZZ99887766",
            "name;email;phone",
        ),
        ("S2", None, "Bruno", None, "", "name;postal"),
        (
            "S3",
            Some("s3@exemple.fr"),
            "Chloé",
            None,
            "",
            "name;shoe_size",
        ),
        ("S1", Some("dup@exemple.fr"), "Dup", None, "", "name"),
    ];
    for (person_ref, email, first_name, phone, identifier, exposed) in rows {
        sqlx::query("INSERT INTO people_export VALUES (?, ?, ?, ?, ?, ?, 'Agence de Lyon')")
            .bind(person_ref)
            .bind(email)
            .bind(first_name)
            .bind(phone)
            .bind(identifier)
            .bind(exposed)
            .execute(&extract)
            .await
            .unwrap();
    }
    extract.close().await;

    campaign.import(&extract_path, &["--table", "people_export"]);
    let pool = campaign.db().await;
    assert_eq!(people_refs(&pool).await, ["S1", "S2"]);
    assert_eq!(state_of(&pool, "S1").await, "pending");
    assert_eq!(state_of(&pool, "S2").await, "no_email");
    let row =
        sqlx::query("SELECT phone_masked, identifier_masked, extra FROM people WHERE ref = 'S1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(row.get::<String, _>(0).ends_with("78"));
    assert_eq!(row.get::<String, _>(1), "…7766");
    assert!(row.get::<String, _>(2).contains("Agence de Lyon"));
    let rejects = read_rejects(&campaign.outside("extract.db.rejects.csv"));
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert!(rejects.iter().any(|r| r[1] == "S3" && r[2] == "exposed"));
    assert!(
        rejects
            .iter()
            .any(|r| r[1] == "S1" && r[3].contains("duplicate"))
    );

    let output = campaign.run(&["import", extract_path.to_str().unwrap(), "--table", "nope"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a missing table is a usage error"
    );
    assert!(stderr(&output).contains("nope"));
}

#[tokio::test]
async fn unknown_categories_are_imported_and_the_letter_says_so() {
    let campaign = Campaign::new();
    let export = campaign.write_outside(
        "people.csv",
        "ref,email,exposed\nU1,u1@exemple.fr,unknown\nU2,u2@exemple.fr,\nU3,u3@exemple.fr,unknown;email\n",
    );
    campaign.import(&export, &[]);
    assert_eq!(campaign.status()["total"], 1);
    let rejects = read_rejects(&campaign.outside("people.csv.rejects.csv"));
    let refused: Vec<(&str, &str)> = rejects
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(refused, [("U2", "exposed"), ("U3", "exposed")]);
    assert!(
        rejects.iter().all(|r| r[3].contains("\"unknown\"")),
        "the reason names the value to use: {rejects:?}"
    );
    let pool = campaign.db().await;
    let stored: String = sqlx::query_scalar("SELECT exposed FROM people WHERE ref = 'U1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, "");
    let out_dir = campaign.outside("preview");
    let output = campaign.run(&["preview", "--all", "--out", out_dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let letter = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .expect("one previewed letter");
    let parsed = mail_parser::MessageParser::default()
        .parse(&letter)
        .unwrap();
    let text = parsed.body_text(0).unwrap();
    assert!(text.contains("Nous ne savons pas encore"), "{text}");
    assert!(text.contains("nous vous écrirons de nouveau"), "{text}");
}
