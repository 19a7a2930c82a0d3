//! Placeholder for the message builder (replaced by the real one).

use crate::config::Config;
use crate::person::Person;
use crate::render::{Letter, RenderError};

pub struct Outgoing {
    pub message_id: String,
    pub envelope_from: String,
    pub recipient: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

pub struct MessageBuilder {
    key: Vec<u8>,
    from: String,
}

impl MessageBuilder {
    pub fn new(config: &Config, signing_key: &[u8]) -> anyhow::Result<Self> {
        Ok(Self {
            key: signing_key.to_vec(),
            from: config.sender.from.email.to_string(),
        })
    }
    pub fn build(
        &self,
        person: &Person,
        letter: &Letter,
        _date: chrono::DateTime<chrono::Utc>,
    ) -> Result<Outgoing, RenderError> {
        let id = crate::verp::message_id(
            &self.key,
            crate::verp::DeliveryRef {
                person_id: person.id,
                generation: person.generation,
            },
            "x.fr",
        );
        let bytes = format!(
            "Message-ID: <{id}>\r\nSubject: {}\r\n\r\n{}\r\n",
            letter.subject, letter.text
        )
        .into_bytes();
        Ok(Outgoing {
            message_id: id,
            envelope_from: self.from.clone(),
            recipient: person.email.clone().unwrap_or_default(),
            sha256: String::new(),
            bytes,
        })
    }
}
