//! The relay's replies made readable before lettre parses them.
//!
//! lettre reads replies as UTF-8 lines of at most 1,000 bytes: a relay that answers `250` after
//! the final dot with Latin-1 text, or with a very long queue report, would make that reply "no
//! reply", and the letter it accepted would be sent again as a possible duplicate. This stream
//! sits under lettre on a clear-text session and hands it each reply line as valid UTF-8 (bad
//! bytes become U+FFFD), cut to 900 bytes, and at most 64 continuation lines per reply: the
//! code, which decides, always arrives. It sits above TLS, so that a relay reached over
//! `smtps://` or STARTTLS is read the same way: the socket under it is a [`Wire`], which the
//! session's opener takes back to start TLS after the relay's `220` to STARTTLS.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Longest reply line handed on, in bytes, the CRLF excluded (lettre refuses over 1,000).
const MAX_LINE: usize = 900;
/// Continuation lines (`250-…`) handed on per reply; the rest are dropped.
const MAX_CONTINUATIONS: usize = 64;

#[derive(Debug)]
pub struct ReadableReplies<S> {
    inner: S,
    /// Bytes of an incomplete line, as read.
    pending: Vec<u8>,
    /// The current line is over the limit: its rest is dropped up to the line feed.
    skipping: bool,
    continuations: usize,
    /// Cleaned lines not yet read by lettre.
    ready: Vec<u8>,
}

impl<S> ReadableReplies<S> {
    pub fn new(inner: S) -> Self {
        ReadableReplies {
            inner,
            pending: Vec::new(),
            skipping: false,
            continuations: 0,
            ready: Vec::new(),
        }
    }

    /// A stream whose first reply is `greeting`, as if the relay had sent it: after STARTTLS a
    /// new session starts over TLS, and lettre's session begins by reading a greeting.
    pub fn primed(inner: S, greeting: &str) -> Self {
        let mut stream = ReadableReplies::new(inner);
        stream.ready.extend_from_slice(greeting.as_bytes());
        stream.ready.extend_from_slice(b"\r\n");
        stream
    }

    /// Takes bytes as read from the relay; complete lines go to `ready`, cleaned.
    fn take_in(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                let line = std::mem::take(&mut self.pending);
                self.skipping = false;
                self.finish_line(&line);
                continue;
            }
            if self.skipping {
                continue;
            }
            self.pending.push(byte);
            if self.pending.len() > MAX_LINE + 1 {
                self.skipping = true;
            }
        }
    }

    fn finish_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let is_continuation = line.get(3) == Some(&b'-');
        if is_continuation {
            self.continuations += 1;
            if self.continuations > MAX_CONTINUATIONS {
                return;
            }
        } else {
            self.continuations = 0;
        }
        let text = String::from_utf8_lossy(line);
        let mut end = text.len().min(MAX_LINE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.ready.extend_from_slice(text[..end].as_bytes());
        self.ready.extend_from_slice(b"\r\n");
    }

    fn hand_out(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.ready.len().min(buf.remaining());
        buf.put_slice(&self.ready[..n]);
        self.ready.drain(..n);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadableReplies<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ready.is_empty() {
            this.hand_out(buf);
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    if filled.is_empty() {
                        // The relay closed: what is left of a line is handed on as it is.
                        if !this.pending.is_empty() {
                            let line = std::mem::take(&mut this.pending);
                            this.finish_line(&line);
                            this.ready.truncate(this.ready.len().saturating_sub(2));
                            this.hand_out(buf);
                        }
                        return Poll::Ready(Ok(()));
                    }
                    let filled = filled.to_vec();
                    this.take_in(&filled);
                    if !this.ready.is_empty() {
                        this.hand_out(buf);
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadableReplies<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What a session can run over: the relay's socket ([`Wire`]), or, in the transaction's tests,
/// an in-memory stream.
pub trait Socket: AsyncRead + AsyncWrite + Send + Sync + Unpin + std::fmt::Debug {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr>;
}

impl Socket for Wire {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        Wire::peer_addr(self)
    }
}

impl<S: Socket> lettre::transport::smtp::client::AsyncTokioStream for ReadableReplies<S> {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

/// The socket under a session: clear TCP or TLS over it. The session's opener keeps a handle on
/// a clear one, to take the TCP stream back when STARTTLS is accepted; the handle is only used
/// between commands, so the lock is never contended.
#[derive(Debug, Clone)]
pub struct Wire(Arc<Mutex<Option<Layer>>>);

#[derive(Debug)]
enum Layer {
    Clear(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Wire {
    pub fn clear(tcp: TcpStream) -> Wire {
        Wire(Arc::new(Mutex::new(Some(Layer::Clear(tcp)))))
    }

    pub fn tls(tls: TlsStream<TcpStream>) -> Wire {
        Wire(Arc::new(Mutex::new(Some(Layer::Tls(Box::new(tls))))))
    }

    /// Takes the clear TCP stream back (for STARTTLS); from then on this wire is closed.
    pub fn take_clear(&self) -> Option<TcpStream> {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match slot.take() {
            Some(Layer::Clear(tcp)) => Some(tcp),
            other => {
                *slot = other;
                None
            }
        }
    }

    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match &*self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            Some(Layer::Clear(tcp)) => tcp.peer_addr(),
            Some(Layer::Tls(tls)) => tls.get_ref().0.peer_addr(),
            None => Err(closed()),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(Pin<&mut (dyn Stream + '_)>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match slot.as_mut() {
            Some(Layer::Clear(tcp)) => f(Pin::new(tcp)),
            Some(Layer::Tls(tls)) => f(Pin::new(tls.as_mut())),
            None => Poll::Ready(Err(closed())),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Stream for T {}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the session's socket was handed to TLS",
    )
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(|stream| stream.poll_read(cx, buf))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|stream| stream.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|stream| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|stream| stream.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(input: &[u8]) -> Vec<u8> {
        let mut stream = ReadableReplies::new(tokio::io::empty());
        stream.take_in(input);
        stream.ready
    }

    #[test]
    fn latin1_and_long_lines_become_readable_replies() {
        let latin1 = b"250 2.0.0 Message accept\xe9 pour livraison\r\n";
        let out = String::from_utf8(cleaned(latin1)).unwrap();
        assert!(
            out.starts_with("250 2.0.0 Message accept\u{fffd} pour"),
            "{out}"
        );
        let mut long = b"250 2.0.0 Ok ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 50_000));
        long.extend_from_slice(b"\r\n");
        let out = cleaned(&long);
        assert_eq!(out.len(), MAX_LINE + 2);
        assert!(out.starts_with(b"250 2.0.0 Ok x") && out.ends_with(b"x\r\n"));
    }

    #[test]
    fn endless_continuations_are_cut_but_the_last_line_stays() {
        let mut reply = Vec::new();
        for _ in 0..1000 {
            reply.extend_from_slice(b"250-queued somewhere\r\n");
        }
        reply.extend_from_slice(b"250 2.0.0 Ok\r\n");
        let out = String::from_utf8(cleaned(&reply)).unwrap();
        assert_eq!(out.lines().count(), MAX_CONTINUATIONS + 1);
        assert!(out.ends_with("250 2.0.0 Ok\r\n"));
    }
}
