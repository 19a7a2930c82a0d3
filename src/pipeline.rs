//! prepare → deliver: the one path a letter takes in `check`, `preview` and `send`.
//!
//! - **source**: people in pages, in id order ([`for_each_page`]), or the deliveries `send`
//!   claimed;
//! - **prepare**: each person's letter rendered and built into the exact message, signed, on
//!   every core ([`Pipeline::prepare_all`]);
//! - **deliver**: where the bytes go, the transport swapped: nowhere (`check` measures them), a
//!   folder (`preview`, and `send` with `file://`, both through
//!   [`crate::transport::write_to_folder`], so both name files by
//!   [`crate::message::file_name`]), or an SMTP relay (`send`);
//! - **record**: only `send` writes to the ledger; `check` and `preview` change nothing.
//!
//! So `check` and `preview` see exactly what `send` would send: the same letters, the same
//! builder with the same signing key, the same code.

use anyhow::Context as _;
use sqlx::SqlitePool;

use crate::config::Config;
use crate::message::{MessageBuilder, Outgoing};
use crate::person::Person;
use crate::render::{Letter, Letters, RenderError};
use crate::store::deliveries::{PersonPages, Selection};

/// People read per database round trip.
const PAGE: i64 = 4096;

/// One person's letter and message, or why they could not be made.
pub type Built = Result<(Letter, Outgoing), RenderError>;

/// The letters and the message builder, loaded once per command.
pub struct Pipeline {
    letters: Letters,
    builder: MessageBuilder,
}

impl Pipeline {
    /// The letters of the campaign and the builder with the campaign's signing key.
    pub async fn load(config: &Config, pool: &SqlitePool) -> anyhow::Result<Pipeline> {
        let letters = Letters::load(config)?;
        let key = crate::store::campaign::signing_key(pool).await?;
        let builder = MessageBuilder::new(config, &key)?;
        Ok(Pipeline { letters, builder })
    }

    pub fn letters(&self) -> &Letters {
        &self.letters
    }

    /// One person's letter and message, dated `now`.
    pub fn prepare(&self, person: &Person, now: chrono::DateTime<chrono::Utc>) -> Built {
        let letter = self.letters.render(person)?;
        let outgoing = self.builder.build(person, &letter, now)?;
        Ok((letter, outgoing))
    }

    /// Prepares every item's message on every core, blocking; the results come back in the
    /// items' order. `finish` runs on the worker right after each message is built (to write
    /// the file, to measure it), so the bytes need not wait for the whole batch.
    pub fn prepare_all<I, T, P, F>(&self, items: Vec<I>, person: P, finish: F) -> Vec<T>
    where
        I: Send,
        T: Send,
        P: Fn(&I) -> &Person + Sync,
        F: Fn(I, Built) -> T + Sync,
    {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(items.len().max(1));
        let chunk = items.len().div_ceil(threads).max(1);
        let now = crate::clock::now();
        let mut chunks = Vec::with_capacity(threads);
        let mut rest = items;
        while !rest.is_empty() {
            let tail = rest.split_off(chunk.min(rest.len()));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        std::thread::scope(|scope| {
            let workers: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let (person, finish) = (&person, &finish);
                    scope.spawn(move || {
                        chunk
                            .into_iter()
                            .map(|item| {
                                let built = self.prepare(person(&item), now);
                                finish(item, built)
                            })
                            .collect::<Vec<T>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| match worker.join() {
                    Ok(results) => results,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }
}

/// Calls `each` with successive pages of the people `selection` names, in id order (see
/// [`PersonPages`] for how a page is read).
pub async fn for_each_page<F>(
    pool: &SqlitePool,
    selection: &Selection,
    mut each: F,
) -> anyhow::Result<()>
where
    F: FnMut(Vec<Person>) -> anyhow::Result<()>,
{
    let pages = PersonPages::new(selection);
    // The next page is read (and decoded) while this one is rendered: reading is a third of the
    // work, and SQLite's thread would otherwise wait for the renderers and they for it.
    let fetch = |after: i64| {
        let (pool, pages) = (pool.clone(), pages.clone());
        tokio::spawn(async move { pages.after(&pool, after, PAGE).await })
    };
    let mut next = Some(fetch(0));
    while let Some(reading) = next.take() {
        let people = reading.await.context("the page reader stopped")??;
        if people.len() as i64 == PAGE {
            next = people.last().map(|last| fetch(last.id));
        }
        if people.is_empty() {
            break;
        }
        // Rendering is CPU work: keep it off the async workers' backs.
        tokio::task::block_in_place(|| each(people))?;
    }
    Ok(())
}
