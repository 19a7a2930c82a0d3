//! `breachmail adviser add|disable|list`: the helpline's accounts, and the Argon2id hashes their
//! passwords are kept as.
//!
//! The password is read from stdin (one line), never from an argument: a command line is visible
//! to every user of the machine and kept in shell histories.

use std::io::BufRead;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::cli::AdviserCommand;
use crate::config::Config;
use crate::exit::{Exit, UsageError};
use crate::store::helpline as store;

/// Shorter passwords are refused: an adviser's account opens the data of every person.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// An Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`), with a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let salt =
        SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("while making a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("while hashing the password: {e}"))
}

/// Whether `password` matches the stored hash. A damaged hash matches nothing.
pub fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A valid hash of no one's password: checked against when the login is unknown, so that an
/// unknown login takes as long to refuse as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("no adviser has this password").unwrap_or_default())
}

fn check_login(login: &str) -> Result<(), UsageError> {
    let ok = !login.is_empty()
        && login.len() <= 64
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(format!(
            "adviser login {login:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("while reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UsageError::new(format!(
            "the password (read from stdin, one line) must have at least {MIN_PASSWORD_CHARS} characters"
        ))
        .into());
    }
    Ok(password)
}

pub async fn run(config: &Config, command: &AdviserCommand) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let now = crate::db::now_ms();
    let exit = match command {
        AdviserCommand::Add {
            login,
            supervisor,
            proxy_only,
        } => {
            check_login(login)?;
            let hash = if *proxy_only {
                None
            } else {
                let password = read_password()?;
                Some(tokio::task::spawn_blocking(move || hash_password(&password)).await??)
            };
            store::save_adviser(&pool, login, hash.as_deref(), *supervisor, now)
                .await
                .context("while saving the adviser")?;
            crate::exit::print_out(&format!(
                "adviser {login} saved{}{}",
                if *supervisor { ", supervisor" } else { "" },
                if *proxy_only {
                    ", logs in through the proxy only"
                } else {
                    ""
                }
            ));
            Exit::Ok
        }
        AdviserCommand::Disable { login } => {
            if store::disable_adviser(&pool, login, now).await? {
                crate::exit::print_out(&format!(
                    "adviser {login} disabled; their sessions are ended"
                ));
                Exit::Ok
            } else {
                crate::exit::print_err(&format!("no adviser {login}"));
                Exit::Failed
            }
        }
        AdviserCommand::List => {
            for adviser in store::advisers(&pool).await? {
                crate::exit::print_out(&format!(
                    "{}\t{}\t{}\t{}",
                    adviser.login,
                    if adviser.supervisor {
                        "supervisor"
                    } else {
                        "adviser"
                    },
                    if adviser.password_hash.is_some() {
                        "password"
                    } else {
                        "proxy only"
                    },
                    if adviser.disabled {
                        "disabled"
                    } else {
                        "enabled"
                    }
                ));
            }
            Exit::Ok
        }
    };
    pool.close().await;
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("correct horse battery!", &hash));
        assert!(!password_matches("anything", "not a hash"));
        assert!(!password_matches("no adviser", decoy_hash()));
    }

    #[test]
    fn logins_are_plain_words() {
        assert!(check_login("marie.dupont").is_ok());
        assert!(check_login("").is_err());
        assert!(check_login("a b").is_err());
        assert!(check_login("<script>").is_err());
    }
}
