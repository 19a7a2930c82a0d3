//! Reading bounces out of where the mail server left them: an mbox file, a maildir
//! folder (or a plain folder of .eml files), or one .eml file. Messages come out one at
//! a time, so a mailbox holding every bounce of a 340,000-notice run is never loaded
//! whole; each carries a source label that error reports can point to.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::parse::MAX_BOUNCE_BYTES;

/// One message as stored, before any parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Where it came from, for error messages: "bounces.mbox message #12 (byte 34567)"
    /// or the file path.
    pub source: String,
    /// The message bytes; empty when `oversized`.
    pub bytes: Vec<u8>,
    /// The message is bigger than [`MAX_BOUNCE_BYTES`]: its bytes were skipped, not
    /// kept, and the caller should report and skip it.
    pub oversized: bool,
    /// Size of the stored message in bytes (also known when oversized).
    pub size: u64,
}

/// Every message in an mbox file, a maildir / .eml folder, or a single .eml file.
///
/// A read error is yielded once, after which the iterator ends (an mbox cannot be
/// resynchronised reliably after a failed read).
pub fn messages(path: &Path) -> Box<dyn Iterator<Item = Result<RawMessage, io::Error>>> {
    if path.is_dir() {
        return match folder_files(path) {
            Ok(files) => Box::new(files.into_iter().map(|file| read_message_file(&file))),
            Err(error) => Box::new(std::iter::once(Err(error))),
        };
    }
    match starts_with_from_line(path) {
        Ok(true) => match File::open(path) {
            Ok(file) => Box::new(MboxMessages::new(
                BufReader::new(file),
                path.display().to_string(),
            )),
            Err(error) => Box::new(std::iter::once(Err(error))),
        },
        Ok(false) => Box::new(std::iter::once(read_message_file(path))),
        Err(error) => Box::new(std::iter::once(Err(error))),
    }
}

fn starts_with_from_line(path: &Path) -> io::Result<bool> {
    let mut start = [0u8; 5];
    let mut filled = 0;
    let mut file = File::open(path)?;
    while filled < start.len() {
        let read = file.read(start.get_mut(filled..).unwrap_or_default())?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(start.get(..filled) == Some(&b"From "[..]))
}

/// Maildir: files of new/ and cur/ (tmp/ holds deliveries still being written).
/// Otherwise the folder's own .eml files. Sorted by file name so runs are repeatable.
fn folder_files(folder: &Path) -> io::Result<Vec<PathBuf>> {
    let new = folder.join("new");
    let cur = folder.join("cur");
    let mut files = Vec::new();
    if new.is_dir() || cur.is_dir() {
        for sub in [new, cur] {
            if sub.is_dir() {
                files.extend(visible_files(&sub, |_| true)?);
            }
        }
    } else {
        files.extend(visible_files(folder, |name| {
            name.to_ascii_lowercase().ends_with(".eml")
        })?);
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn visible_files(folder: &Path, wanted: impl Fn(&str) -> bool) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type()?.is_file() || !wanted(&name) {
            continue;
        }
        files.push(entry.path());
    }
    Ok(files)
}

fn read_message_file(path: &Path) -> Result<RawMessage, io::Error> {
    let source = path.display().to_string();
    let size = fs::metadata(path)?.len();
    if size > MAX_BOUNCE_BYTES as u64 {
        return Ok(RawMessage {
            source,
            bytes: Vec::new(),
            oversized: true,
            size,
        });
    }
    // Read through a bounded reader: the file may grow between stat and read.
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_BOUNCE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    let oversized = bytes.len() > MAX_BOUNCE_BYTES;
    if oversized {
        bytes = Vec::new();
    }
    let size = size.max(bytes.len() as u64);
    Ok(RawMessage {
        source,
        bytes,
        oversized,
        size,
    })
}

/// Streaming mbox splitter. A message starts at a "From " line that opens the file or
/// follows a blank line; ">From " (mboxrd: ">>From " too) body lines lose one '>'.
pub struct MboxMessages<R> {
    reader: R,
    label: String,
    line: Vec<u8>,
    /// The message being gathered, if a "From " line was seen.
    current: Option<PendingMessage>,
    offset: u64,
    count: usize,
    previous_blank: bool,
    finished: bool,
}

struct PendingMessage {
    number: usize,
    start: u64,
    bytes: Vec<u8>,
    size: u64,
    oversized: bool,
}

impl<R: BufRead> MboxMessages<R> {
    /// `label` names the mbox in source labels (usually its path).
    pub fn new(reader: R, label: String) -> Self {
        MboxMessages {
            reader,
            label,
            line: Vec::new(),
            current: None,
            offset: 0,
            count: 0,
            previous_blank: true,
            finished: false,
        }
    }

    fn finish(&self, pending: PendingMessage) -> RawMessage {
        let mut bytes = pending.bytes;
        let mut size = pending.size;
        // The blank line before the next "From " belongs to the mbox, not the message.
        for ending in [&b"\r\n"[..], &b"\n"[..]] {
            if bytes.ends_with(ending) && bytes.len() > ending.len() {
                let body_end = bytes.len() - ending.len();
                if bytes
                    .get(..body_end)
                    .is_some_and(|rest| rest.ends_with(b"\n"))
                {
                    bytes.truncate(body_end);
                    size = size.saturating_sub(ending.len() as u64);
                }
                break;
            }
        }
        RawMessage {
            source: format!(
                "{} message #{} (byte {})",
                self.label, pending.number, pending.start
            ),
            bytes,
            oversized: pending.oversized,
            size,
        }
    }
}

impl<R: BufRead> Iterator for MboxMessages<R> {
    type Item = Result<RawMessage, io::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            self.line.clear();
            let (length, line_cut) =
                match read_line_capped(&mut self.reader, &mut self.line, MAX_BOUNCE_BYTES + 1) {
                    Ok(read) => read,
                    Err(error) => {
                        self.finished = true;
                        return Some(Err(error));
                    }
                };
            if length == 0 {
                self.finished = true;
                return self.current.take().map(|pending| Ok(self.finish(pending)));
            }
            let line_start = self.offset;
            self.offset += length;

            if self.previous_blank && !line_cut && self.line.starts_with(b"From ") {
                self.count += 1;
                let next = PendingMessage {
                    number: self.count,
                    start: line_start,
                    bytes: Vec::new(),
                    size: 0,
                    oversized: false,
                };
                self.previous_blank = false;
                if let Some(done) = self.current.replace(next) {
                    return Some(Ok(self.finish(done)));
                }
                continue;
            }

            self.previous_blank = self.line == b"\n" || self.line == b"\r\n";
            let Some(pending) = self.current.as_mut() else {
                continue; // bytes before the first "From " line: not a message
            };
            // mboxrd unescaping: ">From " -> "From ", ">>From " -> ">From ".
            let quoted = self.line.iter().take_while(|&&b| b == b'>').count();
            let unescaped = if quoted > 0
                && self
                    .line
                    .get(quoted..)
                    .is_some_and(|rest| rest.starts_with(b"From "))
            {
                self.line.get(1..).unwrap_or_default()
            } else {
                self.line.as_slice()
            };
            pending.size += unescaped.len() as u64 + (length - self.line.len() as u64);
            if pending.oversized || line_cut {
                pending.oversized = true;
                pending.bytes = Vec::new();
            } else if pending.bytes.len() + unescaped.len() > MAX_BOUNCE_BYTES {
                // Drop what was gathered: an oversized bounce is reported, not parsed.
                pending.oversized = true;
                pending.bytes = Vec::new();
            } else {
                pending.bytes.extend_from_slice(unescaped);
            }
        }
    }
}

/// Reads one line (through '\n') into `line`, keeping at most `cap` bytes of it.
/// Returns the full length of the line in the file and whether it was cut, so a
/// newline-free multi-gigabyte "line" never sits in memory.
fn read_line_capped(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    cap: usize,
) -> io::Result<(u64, bool)> {
    let mut length = 0u64;
    let mut cut = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok((length, cut));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (available.get(..=newline).unwrap_or(available), true),
            None => (available, false),
        };
        let room = cap.saturating_sub(line.len());
        if chunk.len() > room {
            cut = true;
        }
        line.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        let used = chunk.len();
        length += used as u64;
        reader.consume(used);
        if done {
            return Ok((length, cut));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(mbox: &[u8]) -> Vec<RawMessage> {
        MboxMessages::new(mbox, "test.mbox".to_string())
            .collect::<Result<Vec<_>, _>>()
            .expect("in-memory mbox reads")
    }

    #[test]
    fn mbox_is_split_and_unescaped() {
        let mbox = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From here\n>>From there\nFrom inside a line\n\nFrom b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\nx\n";
        let messages = split(mbox);
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[0].bytes,
            b"Subject: one\n\nbody\nFrom here\n>From there\nFrom inside a line\n".to_vec()
        );
        assert_eq!(messages[0].source, "test.mbox message #1 (byte 0)");
        assert_eq!(messages[1].bytes, b"Subject: two\n\nx\n".to_vec());
        assert!(
            messages[1]
                .source
                .starts_with("test.mbox message #2 (byte ")
        );
    }

    #[test]
    fn oversized_mbox_message_is_flagged_not_kept() {
        let mut mbox = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: big\n\n".to_vec();
        let line = vec![b'y'; 1023];
        for _ in 0..(MAX_BOUNCE_BYTES / 1024 + 10) {
            mbox.extend_from_slice(&line);
            mbox.push(b'\n');
        }
        mbox.extend_from_slice(b"\nFrom b@x Mon Jan  1 00:00:00 2024\nSubject: small\n\nx\n");
        let messages = split(&mbox);
        assert_eq!(messages.len(), 2);
        assert!(messages[0].oversized);
        assert!(messages[0].bytes.is_empty());
        assert!(messages[0].size > MAX_BOUNCE_BYTES as u64);
        assert!(!messages[1].oversized);
    }

    #[test]
    fn newline_free_giant_line_is_flagged() {
        let mut mbox = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: big\n\n".to_vec();
        mbox.extend(std::iter::repeat_n(b'z', MAX_BOUNCE_BYTES + 5));
        let messages = split(&mbox);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].oversized);
    }

    #[test]
    fn crlf_mbox_keeps_message_endings() {
        let mbox = b"From a@x Mon Jan  1 00:00:00 2024\r\nSubject: one\r\n\r\nbody\r\n\r\nFrom b@x Mon Jan  1 00:00:00 2024\r\nSubject: two\r\n\r\nx\r\n";
        let messages = split(mbox);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].bytes, b"Subject: one\r\n\r\nbody\r\n".to_vec());
    }
}
