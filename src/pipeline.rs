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
            .unwrap_or(2);
        let now = crate::clock::now();
        in_parallel(items, threads, |item| {
            let built = self.prepare(person(&item), now);
            finish(item, built)
        })
    }
}

/// `each` over `items` on `threads` threads, the results in the items' order. Each thread takes
/// the next item when it is done with one, rather than a fixed share: a thread slowed by other
/// work on its core (the connections') does not leave the other cores idle at the end.
fn in_parallel<I, T, F>(items: Vec<I>, threads: usize, each: F) -> Vec<T>
where
    I: Send,
    T: Send,
    F: Fn(I) -> T + Sync,
{
    let count = items.len();
    let threads = threads.clamp(1, count.max(1));
    let next = std::sync::Mutex::new(items.into_iter().enumerate());
    let take = || next.lock().unwrap_or_else(|e| e.into_inner()).next();
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (each, take) = (&each, &take);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    while let Some((index, item)) = take() {
                        done.push((index, each(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_unstable_by_key(|(index, _)| *index);
    debug_assert_eq!(done.len(), count);
    done.into_iter().map(|(_, result)| result).collect()
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

#[cfg(test)]
mod tests {
    use super::in_parallel;

    #[test]
    fn work_shared_between_threads_comes_back_in_the_items_order() {
        // Uneven work, so that threads finish items out of order.
        let items: Vec<u64> = (0..1000).collect();
        let done = in_parallel(items.clone(), 4, |i| {
            let mut x = i;
            for _ in 0..(i % 7) * 1000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
            (i, x != u64::MAX)
        });
        let order: Vec<u64> = done.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, items);
        assert_eq!(in_parallel(vec![7], 8, |i| i * 2), [14]);
        assert!(in_parallel(Vec::<u8>::new(), 2, |i| i).is_empty());
    }
}
