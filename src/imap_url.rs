//! Where the bounce mailbox is, as the operator writes it in `bounces.imap` or `--imap`:
//! `imaps://USER@HOST[:PORT]/FOLDER`, or `imap://…` for STARTTLS. A setting, read with the
//! configuration; the IMAP client itself is `bounces::imap`.

use std::fmt;

/// `imaps://USER@HOST[:PORT]/FOLDER` or `imap://…` (STARTTLS), as written in `bounces.imap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    pub security: Security,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub folder: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `imaps://`, port 993 by default.
    Tls,
    /// `imap://`, port 143 by default: STARTTLS is required.
    StartTls,
}

impl ImapUrl {
    /// Reads the URL; the error says what is expected. A password in it is refused: it comes
    /// from `BREACHMAIL_BOUNCES_PASSWORD` only.
    pub fn parse(value: &str) -> Result<ImapUrl, String> {
        let expected = "imaps://USER@HOST[:PORT]/FOLDER (or imap://, upgraded with STARTTLS)";
        let (scheme, rest) = value
            .trim()
            .split_once("://")
            .ok_or_else(|| format!("expected {expected}"))?;
        let (security, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "imaps" => (Security::Tls, 993),
            "imap" => (Security::StartTls, 143),
            _ => return Err(format!("expected {expected}")),
        };
        let (authority, folder) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, host_port) = authority
            .rsplit_once('@')
            .ok_or_else(|| format!("no user name: expected {expected}"))?;
        if user.contains(':') {
            return Err(
                "a password in the URL: it is read from BREACHMAIL_BOUNCES_PASSWORD (or BREACHMAIL_BOUNCES_PASSWORD_FILE) only".to_owned(),
            );
        }
        let user = percent_decode(user)?;
        if user.is_empty() {
            return Err(format!("no user name: expected {expected}"));
        }
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| "the port must be a number from 1 to 65535".to_owned())?,
            ),
            _ => (host_port, default_port),
        };
        if host.is_empty() {
            return Err(format!("no host: expected {expected}"));
        }
        let folder = percent_decode(folder.trim_end_matches('/'))?;
        let folder = if folder.is_empty() {
            "INBOX".to_owned()
        } else {
            folder
        };
        check_mailbox_name(&folder)?;
        Ok(ImapUrl {
            security,
            user,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            folder,
        })
    }
}

impl fmt::Display for ImapUrl {
    /// The folder's name in the database and the logs: never a password (there is none here).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            Security::Tls => "imaps",
            Security::StartTls => "imap",
        };
        write!(
            f,
            "{scheme}://{}@{}:{}/{}",
            self.user, self.host, self.port, self.folder
        )
    }
}

/// Folder names go into IMAP commands quoted: no quote, backslash or control character.
pub fn check_mailbox_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(format!(
            "{name:?}: a folder name without quotes, backslashes or control characters"
        ));
    }
    Ok(())
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = bytes
                .get(index + 1..index + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{text:?}: a % must be followed by two hex digits"))?;
            out.push(hex);
            index += 3;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?}: not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_passwords_refused() {
        let url =
            ImapUrl::parse("imaps://bounces%40example.fr@mail.example.fr/Bounces").expect("valid");
        assert_eq!(url.user, "bounces@example.fr");
        assert_eq!(url.host, "mail.example.fr");
        assert_eq!(url.port, 993);
        assert_eq!(url.folder, "Bounces");
        assert_eq!(
            url.to_string(),
            "imaps://bounces@example.fr@mail.example.fr:993/Bounces"
        );
        let url = ImapUrl::parse("imap://b@example.fr@127.0.0.1:10143").expect("valid");
        assert_eq!(url.security, Security::StartTls);
        assert_eq!(url.user, "b@example.fr");
        assert_eq!(url.port, 10143);
        assert_eq!(url.folder, "INBOX");
        for bad in [
            "imaps://user:hunter2@host/INBOX",
            "pop3s://user@host/",
            "imaps://host/INBOX",
            "imaps://user@host:0/INBOX",
            "imaps://user@host/In\"box",
        ] {
            let error = ImapUrl::parse(bad).expect_err(bad);
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
