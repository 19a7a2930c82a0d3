//! The one place a delivery changes state, and the one place an event is written.
//!
//! Every transition of [`Transition`] is applied by [`apply`]: one statement
//! `UPDATE deliveries SET state = <to>, … WHERE state IN (<from>) AND <rows> RETURNING …`, whose
//! state, from-states and the event's from- and to-state all come from the transition, then one
//! event for each row the statement changed, and none for a row it did not. The functions of the
//! ledger say only what else a transition writes (`attempts = attempts + 1`, the reply, …) and
//! which rows it concerns. [`append_event`] stays inside the ledger: the notes that change no
//! state (a soft bounce, an adviser's call) go through the ledger's functions too.

use std::collections::BTreeMap;

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Row, Sqlite, SqliteConnection};

use crate::domain::{DeliveryState, EventKind, Transition, sql_states};

/// Which of the transition's from-states a write accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum From {
    /// Any of them. A transition from several states (a claim, from `pending` or `deferred`)
    /// keeps the one each row left in `claimed_from`, where its event and a release read it.
    Any,
    /// The one the caller read the delivery in: if it is not one of the transition's, or the
    /// delivery has left it since, nothing is written.
    Read(DeliveryState),
}

/// The state a write leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum To {
    /// The transition's one to-state.
    Only,
    /// One of the transition's to-states, chosen by the caller (an import's update).
    Given(DeliveryState),
    /// Back to the state the claim came from (`claimed_from`), if it is one of the transition's
    /// to-states, else the first of them (a release).
    Claimed,
}

/// One transition as a statement: what it writes besides the state, and which rows.
pub(super) struct Change<'a> {
    pub transition: Transition,
    pub from: From,
    pub to: To,
    /// The other columns it writes, `attempts = attempts + 1, updated_at = ?`: never the state
    /// or `claimed_from`, which are the transition's.
    pub set: &'a str,
    /// A source to update from (`UPDATE … FROM`), e.g. `(VALUES …) AS v`; empty for none.
    pub source: &'a str,
    /// Which rows, besides their state: `deliveries.person_id = ? AND deliveries.claimed_by = ?`.
    /// Rows are named by id, so the state is matched without its index (see `claim_sql`).
    pub rows: &'a str,
    /// Whether the event names the delivery's generation (an update concerns the person, and
    /// its event has never named one).
    pub names_generation: bool,
}

/// The values a [`Change`]'s statement binds, in the order of its `?`s: its SET list's, its
/// source's, then its rows'.
pub(super) struct Binds<'q> {
    args: SqliteArguments<'q>,
    error: Option<sqlx::error::BoxDynError>,
}

impl<'q> Binds<'q> {
    pub fn new() -> Binds<'q> {
        Binds {
            args: SqliteArguments::default(),
            error: None,
        }
    }

    pub fn add<T>(mut self, value: T) -> Binds<'q>
    where
        T: sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite> + 'q,
    {
        // Kept for `apply` to return, as sqlx's own `bind` does.
        if let Err(error) = self.args.add(value) {
            self.error.get_or_insert(error);
        }
        self
    }
}

/// A delivery a transition moved, as its statement returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Moved {
    pub person_id: i64,
    /// After the change (a resend's new generation).
    pub generation: i64,
    pub from: DeliveryState,
    pub to: DeliveryState,
}

/// Applies `change` and writes one event of its kind for each row it moved, with `detail`'s
/// text for that row. Returns the rows moved: none when no row was in a from-state.
pub(super) async fn apply<'q, 'd>(
    conn: &mut SqliteConnection,
    change: &Change<'_>,
    binds: Binds<'q>,
    run_id: i64,
    detail: impl Fn(&Moved) -> Option<&'d str>,
    now: i64,
) -> anyhow::Result<Vec<Moved>> {
    if let Some(error) = binds.error {
        return Err(anyhow::anyhow!(error).context("while binding a transition's values"));
    }
    let Some(sql) = change_sql(change)? else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query_with(&sql, binds.args)
        .fetch_all(&mut *conn)
        .await?;
    let moved = rows
        .iter()
        .map(|row| {
            Ok(Moved {
                person_id: row.try_get("person_id")?,
                generation: row.try_get("generation")?,
                from: row.try_get::<String, _>("from_state")?.parse()?,
                to: row.try_get::<String, _>("to_state")?.parse()?,
            })
        })
        .collect::<anyhow::Result<Vec<Moved>>>()?;
    let mut by_states: BTreeMap<(DeliveryState, DeliveryState), Vec<&Moved>> = BTreeMap::new();
    for row in &moved {
        if !change.transition.allows(Some(row.from), row.to) {
            anyhow::bail!(
                "person {}: {} → {} is not a {} transition",
                row.person_id,
                row.from,
                row.to,
                change.transition.kind().as_str()
            );
        }
        by_states.entry((row.from, row.to)).or_default().push(row);
    }
    for ((from, to), rows) in by_states {
        for chunk in rows.chunks(EVENT_CHUNK) {
            insert_events(conn, change, (from, to), chunk, run_id, &detail, now).await?;
        }
    }
    Ok(moved)
}

/// Events written together: five values each, well under SQLite's limit of bound values.
const EVENT_CHUNK: usize = 128;

/// The events of moved rows that share their from- and to-state: one statement, with the
/// states and the kind spliced from their types (never input).
async fn insert_events<'d>(
    conn: &mut SqliteConnection,
    change: &Change<'_>,
    (from, to): (DeliveryState, DeliveryState),
    rows: &[&Moved],
    run_id: i64,
    detail: &impl Fn(&Moved) -> Option<&'d str>,
    now: i64,
) -> anyhow::Result<()> {
    let values = vec![
        format!(
            "(?, ?, ?, '{kind}', '{from}', '{to}', ?, ?)",
            kind = change.transition.kind().as_str(),
            from = from.as_str(),
            to = to.as_str(),
        );
        rows.len()
    ]
    .join(",");
    let sql = format!(
        "INSERT INTO events (person_id, at, run_id, kind, from_state, to_state, generation, detail)
         VALUES {values}"
    );
    let mut insert = sqlx::query(&sql);
    for row in rows {
        insert = insert
            .bind(row.person_id)
            .bind(now)
            .bind(run_id)
            .bind(change.names_generation.then_some(row.generation))
            .bind(detail(row));
    }
    insert.execute(&mut *conn).await?;
    Ok(())
}

/// The statement of a change, or None when the from-state the caller read is not one the
/// transition may start from.
pub(super) fn change_sql(change: &Change<'_>) -> anyhow::Result<Option<String>> {
    let transition = change.transition;
    let from_states: Vec<DeliveryState> = match change.from {
        From::Any => transition.from_states().to_vec(),
        From::Read(state) if transition.from_states().contains(&state) => vec![state],
        From::Read(_) => return Ok(None),
    };
    // The event's from-state: the one state the rows were in, or the one each kept.
    let (keep_from, from_state) = match from_states.as_slice() {
        [one] => (String::new(), format!("'{}'", one.as_str())),
        _ if transition == Transition::Claim => (
            ", claimed_from = deliveries.state".to_owned(),
            "deliveries.claimed_from".to_owned(),
        ),
        _ => anyhow::bail!(
            "a {} write must name the state it read",
            transition.kind().as_str()
        ),
    };
    let to_states = transition.to_states();
    let to = match change.to {
        To::Only => match to_states {
            [one] => format!("'{}'", one.as_str()),
            _ => anyhow::bail!(
                "a {} leads to one of several states: name it",
                transition.kind().as_str()
            ),
        },
        To::Given(state) if to_states.contains(&state) => format!("'{}'", state.as_str()),
        To::Given(state) => {
            anyhow::bail!("a {} does not lead to {state}", transition.kind().as_str())
        }
        To::Claimed => format!(
            "CASE WHEN deliveries.claimed_from IN ({states}) THEN deliveries.claimed_from
                  ELSE '{first}' END",
            states = sql_states(to_states),
            first = to_states.first().map_or("", |s| s.as_str()),
        ),
    };
    let source = if change.source.is_empty() {
        String::new()
    } else {
        format!(" FROM {}", change.source)
    };
    Ok(Some(format!(
        "UPDATE deliveries SET state = {to}{keep_from}, {set}{source}
         WHERE +deliveries.state IN ({from}) AND {rows}
         RETURNING deliveries.person_id AS person_id, deliveries.generation AS generation,
                   {from_state} AS from_state, deliveries.state AS to_state",
        set = change.set,
        from = sql_states(&from_states),
        rows = change.rows,
    )))
}

/// The rows of `count` deliveries named by id, for a [`Change`].
pub(super) fn by_ids(count: usize) -> String {
    format!("deliveries.person_id IN ({})", vec!["?"; count].join(","))
}

/// One line of evidence that changes no state: a note on a person's letter.
pub(super) struct Event<'a> {
    pub person_id: i64,
    pub run_id: i64,
    pub kind: EventKind,
    /// The state the delivery stays in, when the note names it (an update of a letter
    /// already gone).
    pub in_state: Option<DeliveryState>,
    pub generation: Option<i64>,
    pub detail: &'a str,
    /// The adviser who acted, for what an adviser did at the helpline.
    pub adviser: Option<&'a str>,
}

/// Appends a note. Only for kinds that are no transition: a transition's events are
/// [`apply`]'s.
pub(super) async fn append_event(
    conn: &mut SqliteConnection,
    event: Event<'_>,
    now: i64,
) -> anyhow::Result<()> {
    if Transition::ALL.iter().any(|t| t.kind() == event.kind) && event.in_state.is_none() {
        anyhow::bail!(
            "a {} event records a transition: it is written with its change",
            event.kind.as_str()
        );
    }
    let state = event.in_state.map(DeliveryState::as_str);
    sqlx::query(
        "INSERT INTO events
           (person_id, at, run_id, kind, from_state, to_state, generation, detail, adviser)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.person_id)
    .bind(now)
    .bind(event.run_id)
    .bind(event.kind.as_str())
    .bind(state)
    .bind(state)
    .bind(event.generation)
    .bind(event.detail)
    .bind(event.adviser)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(transition: Transition, from: From, to: To) -> Change<'static> {
        Change {
            transition,
            from,
            to,
            set: "updated_at = ?",
            source: "",
            rows: "deliveries.person_id = ?",
            names_generation: true,
        }
    }

    #[test]
    fn the_state_and_the_from_states_come_from_the_transition() {
        let sql = change_sql(&change(Transition::Defer, From::Any, To::Only))
            .unwrap()
            .unwrap();
        assert!(
            sql.contains("SET state = 'deferred', updated_at = ?"),
            "{sql}"
        );
        assert!(sql.contains("+deliveries.state IN ('sending')"), "{sql}");
        assert!(sql.contains("'sending' AS from_state"), "{sql}");

        let claim = change_sql(&change(Transition::Claim, From::Any, To::Only))
            .unwrap()
            .unwrap();
        assert!(claim.contains("claimed_from = deliveries.state"), "{claim}");
        assert!(
            claim.contains("deliveries.claimed_from AS from_state"),
            "{claim}"
        );
    }

    #[test]
    fn a_read_state_the_transition_cannot_start_from_writes_nothing() {
        let resend = change(
            Transition::Resend,
            From::Read(DeliveryState::Sending),
            To::Only,
        );
        assert_eq!(change_sql(&resend).unwrap(), None);
        let bounce = change(
            Transition::Bounce,
            From::Read(DeliveryState::Delivered),
            To::Only,
        );
        let sql = change_sql(&bounce).unwrap().unwrap();
        assert!(sql.contains("IN ('delivered')"), "{sql}");
        assert!(sql.contains("'delivered' AS from_state"), "{sql}");
    }

    #[test]
    fn a_write_that_is_not_the_transition_is_refused() {
        assert!(change_sql(&change(Transition::Bounce, From::Any, To::Only)).is_err());
        let update = change(
            Transition::Update,
            From::Read(DeliveryState::Pending),
            To::Given(DeliveryState::Sent),
        );
        assert!(change_sql(&update).is_err());
        assert!(change_sql(&change(Transition::Release, From::Any, To::Only)).is_err());
    }
}
