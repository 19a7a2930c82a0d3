//! Placeholder for the letters engine (replaced by the real one).

use crate::config::Config;
use crate::person::Person;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

pub struct Letter {
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct Letters {
    fingerprint: String,
}

impl Letters {
    pub fn load(_config: &Config) -> anyhow::Result<Letters> {
        Ok(Letters {
            fingerprint: "stub".into(),
        })
    }
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    pub fn render(&self, person: &Person) -> Result<Letter, RenderError> {
        Ok(Letter {
            language: person.language.clone(),
            subject: format!("Notice {}", person.notice_id),
            text: format!("Hello {}", person.person_ref),
            html: String::new(),
        })
    }
}
