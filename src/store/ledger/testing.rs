//! What the ledger's tests share: a person and a campaign of them.

use super::insert_people;
use crate::domain::Email;
use crate::store::people::NewPerson;

pub(super) fn person(person_ref: &str) -> NewPerson {
    NewPerson {
        person_ref: crate::domain::PersonRef::parse(person_ref).expect("a ref"),
        email: Some(
            Email::parse(&format!("{}@exemple.fr", person_ref.to_lowercase())).expect("an address"),
        ),
        alt_email: None,
        civility: None,
        first_name: Some("Anne".into()),
        last_name: None,
        language: "fr".into(),
        address_line1: None,
        address_line2: None,
        postcode: None,
        city: None,
        country: None,
        phone_masked: None,
        identifier_masked: None,
        exposed: "name;email".into(),
        extra: "{}".into(),
        row_hash: format!("hash-{person_ref}"),
    }
}

pub(super) async fn campaign_of(n: usize) -> (tempfile::TempDir, sqlx::SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = crate::db::open(&dir.path().join("c.db"), true)
        .await
        .unwrap();
    let people: Vec<NewPerson> = (1..=n).map(|i| person(&format!("P{i}"))).collect();
    let refs: Vec<&NewPerson> = people.iter().collect();
    let mut tx = pool.begin().await.unwrap();
    insert_people(&mut tx, &refs, 1, 0).await.unwrap();
    tx.commit().await.unwrap();
    (dir, pool)
}
