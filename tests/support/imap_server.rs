//! An IMAP stand-in on loopback, for the tests plain `cargo test` runs where no Dovecot can:
//! TLS from the first byte (`imaps://`) with a certificate from a throwaway CA
//! ([`ImapServer::ca_pem`]), one account, folders of messages with UIDs, and the few commands
//! `bounces --imap` sends (CAPABILITY, LOGIN, LIST, CREATE, SELECT, UID SEARCH, UID FETCH,
//! UID MOVE, UID STORE, UID EXPUNGE, LOGOUT). It counts how often each message's body was
//! fetched, so a test can prove nothing is read twice. The real-server test is
//! `tests/e2e/dovecot_imap.sh`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const USER: &str = "bounces@example.fr";
pub const PASSWORD: &str = "stand-in password";

#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub uid: u32,
    pub bytes: Vec<u8>,
    pub seen: bool,
    pub deleted: bool,
}

#[derive(Debug, Default)]
struct Mailboxes {
    folders: BTreeMap<String, Vec<StoredMessage>>,
    uidvalidity: u32,
    next_uid: u32,
    /// UIDVALIDITY:UID → how many times its body was fetched.
    body_fetches: BTreeMap<(u32, u32), usize>,
}

pub struct ImapServer {
    port: u16,
    ca_pem: String,
    state: Arc<Mutex<Mailboxes>>,
    task: tokio::task::JoinHandle<()>,
}

impl ImapServer {
    /// Listens on 127.0.0.1, on a free port, with an empty INBOX.
    pub async fn start() -> ImapServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (tls, ca_pem) = super::smtp_server::test_tls();
        let state = Arc::new(Mutex::new(Mailboxes {
            folders: BTreeMap::from([("INBOX".to_string(), Vec::new())]),
            uidvalidity: 1_741_000_000,
            next_uid: 1,
            ..Mailboxes::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tls: TlsAcceptor = tls.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = tls.accept(stream).await {
                        let _ = session(stream, state).await;
                    }
                });
            }
        });
        ImapServer {
            port,
            ca_pem,
            state,
            task,
        }
    }

    /// `imaps://bounces%40example.fr@127.0.0.1:PORT/INBOX`
    pub fn url(&self) -> String {
        format!("imaps://bounces%40example.fr@127.0.0.1:{}/INBOX", self.port)
    }

    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Delivers a message into INBOX, with the next UID.
    pub fn deliver(&self, bytes: &[u8]) {
        let mut state = self.state.lock().expect("state");
        let uid = state.next_uid;
        state.next_uid += 1;
        state
            .folders
            .entry("INBOX".to_string())
            .or_default()
            .push(StoredMessage {
                uid,
                bytes: bytes.to_vec(),
                seen: false,
                deleted: false,
            });
    }

    /// What a server does when it rebuilds its index: a new UIDVALIDITY, every UID renumbered.
    pub fn renumber(&self) {
        let mut state = self.state.lock().expect("state");
        state.uidvalidity += 1;
        let mut next = 1;
        for messages in state.folders.values_mut() {
            for message in messages.iter_mut() {
                message.uid = next;
                next += 1;
            }
        }
        state.next_uid = next;
    }

    pub fn folder(&self, name: &str) -> Vec<StoredMessage> {
        let state = self.state.lock().expect("state");
        state.folders.get(name).cloned().unwrap_or_default()
    }

    pub fn has_folder(&self, name: &str) -> bool {
        self.state.lock().expect("state").folders.contains_key(name)
    }

    /// The most times any one message's body was fetched.
    pub fn most_fetches_of_one_message(&self) -> usize {
        let state = self.state.lock().expect("state");
        state.body_fetches.values().copied().max().unwrap_or(0)
    }

    pub fn body_fetches(&self) -> usize {
        self.state
            .lock()
            .expect("state")
            .body_fetches
            .values()
            .sum()
    }
}

impl Drop for ImapServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// "1:4,7,9:*" → the UIDs of `existing` it names.
fn uids_in(set: &str, existing: &[u32]) -> Vec<u32> {
    let highest = existing.iter().copied().max().unwrap_or(0);
    let bound = |text: &str| {
        if text == "*" {
            highest
        } else {
            text.parse().unwrap_or(0)
        }
    };
    let mut wanted = Vec::new();
    for part in set.split(',') {
        let (low, high) = match part.split_once(':') {
            Some((a, b)) => (bound(a), bound(b)),
            None => (bound(part), bound(part)),
        };
        let (low, high) = (low.min(high), low.max(high));
        wanted.extend(
            existing
                .iter()
                .copied()
                .filter(|u| (low..=high).contains(u)),
        );
    }
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

fn unquote(text: &str) -> String {
    text.trim().trim_matches('"').to_string()
}

async fn session<S>(stream: S, state: Arc<Mutex<Mailboxes>>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    writer.write_all(b"* OK IMAP stand-in ready\r\n").await?;
    let mut selected = String::from("INBOX");
    let mut logged_in = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let (tag, rest) = command.split_once(' ').unwrap_or((command.as_str(), ""));
        let words: Vec<&str> = rest.splitn(2, ' ').collect();
        let verb = words.first().copied().unwrap_or("").to_ascii_uppercase();
        let args = words.get(1).copied().unwrap_or("");
        let mut out: Vec<u8> = Vec::new();
        match verb.as_str() {
            "CAPABILITY" => out.extend_from_slice(b"* CAPABILITY IMAP4rev1 MOVE UIDPLUS\r\n"),
            "LOGIN" => {
                let parts: Vec<&str> = args.splitn(2, "\" \"").collect();
                let user = unquote(parts.first().copied().unwrap_or(""));
                let password = unquote(parts.get(1).copied().unwrap_or(""));
                if user != USER || password != PASSWORD {
                    writer
                        .write_all(format!("{tag} NO [AUTHENTICATIONFAILED] no\r\n").as_bytes())
                        .await?;
                    continue;
                }
                logged_in = true;
            }
            "LOGOUT" => {
                writer
                    .write_all(format!("* BYE\r\n{tag} OK LOGOUT\r\n").as_bytes())
                    .await?;
                return Ok(());
            }
            _ if !logged_in => {
                writer
                    .write_all(format!("{tag} NO log in first\r\n").as_bytes())
                    .await?;
                continue;
            }
            "LIST" => {
                let name = unquote(args.rsplit_once(' ').map_or(args, |(_, n)| n));
                if state.lock().expect("state").folders.contains_key(&name) {
                    out.extend_from_slice(format!("* LIST () \"/\" \"{name}\"\r\n").as_bytes());
                }
            }
            "CREATE" => {
                let name = unquote(args);
                state
                    .lock()
                    .expect("state")
                    .folders
                    .entry(name)
                    .or_default();
            }
            "SELECT" => {
                selected = unquote(args);
                let state = state.lock().expect("state");
                let count = state.folders.get(&selected).map_or(0, Vec::len);
                out.extend_from_slice(
                    format!(
                        "* {count} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n\
                         * OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] next\r\n",
                        state.uidvalidity, state.next_uid
                    )
                    .as_bytes(),
                );
            }
            "UID" => {
                let (sub, sub_args) = args.split_once(' ').unwrap_or((args, ""));
                match uid_command(&state, &selected, sub, sub_args) {
                    Ok(untagged) => out.extend_from_slice(&untagged),
                    Err(refusal) => {
                        writer
                            .write_all(format!("{tag} {refusal}\r\n").as_bytes())
                            .await?;
                        continue;
                    }
                }
            }
            _ => {
                writer
                    .write_all(format!("{tag} BAD unknown\r\n").as_bytes())
                    .await?;
                continue;
            }
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        writer.write_all(&out).await?;
        writer.flush().await?;
    }
}

/// One UID command: its untagged responses, or the tagged refusal.
fn uid_command(
    state: &Mutex<Mailboxes>,
    selected: &str,
    sub: &str,
    sub_args: &str,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut state = state.lock().expect("state");
    let uidvalidity = state.uidvalidity;
    let Some(messages) = state.folders.get(selected).cloned() else {
        return Err("NO no such folder".to_string());
    };
    let existing: Vec<u32> = messages.iter().map(|m| m.uid).collect();
    let sequence = |uid: u32| existing.iter().position(|u| *u == uid).unwrap_or(0) + 1;
    match sub.to_ascii_uppercase().as_str() {
        "SEARCH" => {
            let mut terms = sub_args.split_whitespace();
            let _ = terms.next(); // "UID"
            let set = terms.next().unwrap_or("1:*");
            let unseen = terms.any(|t| t.eq_ignore_ascii_case("UNSEEN"));
            let found: Vec<String> = uids_in(set, &existing)
                .into_iter()
                .filter(|uid| !unseen || messages.iter().any(|m| m.uid == *uid && !m.seen))
                .map(|uid| uid.to_string())
                .collect();
            out.extend_from_slice(format!("* SEARCH {}\r\n", found.join(" ")).as_bytes());
        }
        "FETCH" => {
            let (set, items) = sub_args.split_once(' ').unwrap_or((sub_args, ""));
            for uid in uids_in(set, &existing) {
                let Some(message) = messages.iter().find(|m| m.uid == uid) else {
                    continue;
                };
                let seq = sequence(uid);
                if items.contains("BODY.PEEK[]") {
                    *state.body_fetches.entry((uidvalidity, uid)).or_default() += 1;
                    out.extend_from_slice(
                        format!(
                            "* {seq} FETCH (UID {uid} BODY[] {{{}}}\r\n",
                            message.bytes.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(&message.bytes);
                    out.extend_from_slice(b")\r\n");
                } else {
                    out.extend_from_slice(
                        format!(
                            "* {seq} FETCH (UID {uid} RFC822.SIZE {})\r\n",
                            message.bytes.len()
                        )
                        .as_bytes(),
                    );
                }
            }
        }
        "STORE" => {
            let (set, flags) = sub_args.split_once(' ').unwrap_or((sub_args, ""));
            let wanted = uids_in(set, &existing);
            if let Some(folder) = state.folders.get_mut(selected) {
                for message in folder.iter_mut().filter(|m| wanted.contains(&m.uid)) {
                    message.seen |= flags.contains("\\Seen");
                    message.deleted |= flags.contains("\\Deleted");
                }
            }
        }
        "MOVE" | "COPY" => {
            let (set, target) = sub_args.split_once(' ').unwrap_or((sub_args, ""));
            let target = unquote(target);
            if !state.folders.contains_key(&target) {
                return Err("NO [TRYCREATE] no such folder".to_string());
            }
            let wanted = uids_in(set, &existing);
            let mut moved: Vec<StoredMessage> = messages
                .iter()
                .filter(|m| wanted.contains(&m.uid))
                .cloned()
                .collect();
            for message in &mut moved {
                message.uid = state.next_uid;
                state.next_uid += 1;
            }
            state.folders.entry(target).or_default().extend(moved);
            if sub.eq_ignore_ascii_case("MOVE")
                && let Some(folder) = state.folders.get_mut(selected)
            {
                folder.retain(|m| !wanted.contains(&m.uid));
            }
        }
        "EXPUNGE" => {
            let wanted = uids_in(sub_args, &existing);
            if let Some(folder) = state.folders.get_mut(selected) {
                folder.retain(|m| !(m.deleted && wanted.contains(&m.uid)));
            }
        }
        _ => return Err("BAD unknown".to_string()),
    }
    Ok(out)
}
