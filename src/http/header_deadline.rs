//! HEADER_TIMEOUT: a client must send a request's whole head (request line and headers) within
//! the timeout once it has started it, and its first request within the timeout of connecting
//! (a TLS handshake included). Otherwise the connection is closed.
//!
//! poem gives hyper no timer, so hyper's own header timeout never runs; without this, a client that
//! sends a header a byte a minute (or connects and sends nothing) holds a connection and its task
//! forever. The deadline is kept on the connection's decrypted byte stream: a request head ends
//! with an empty line (`\r\n\r\n`, RFC 9112 §2.1); the next head starts after a final response is
//! written. HTTP/2 (its binary framing has no such line) is left to the connection idle timeout.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The end of a request head.
const END_OF_HEAD: &[u8] = b"\r\n\r\n";
/// An HTTP/2 connection preface starts so (RFC 9113 §3.4); no HTTP/1 method is `PRI`.
const HTTP2_PREFACE: &[u8] = b"PRI ";
/// An interim (1xx) response, such as `100 Continue`: the request it answers is still arriving.
const INTERIM: &[u8] = b"HTTP/1.1 1";

/// Wraps an acceptor so that every connection it yields keeps HEADER_TIMEOUT.
pub struct HeaderDeadline<A> {
    inner: A,
    timeout: Duration,
}

impl<A> HeaderDeadline<A> {
    /// `inner`'s connections, each closed when a request head takes longer than `timeout`.
    pub fn new(inner: A, timeout: Duration) -> Self {
        HeaderDeadline { inner, timeout }
    }
}

impl<A: Acceptor> Acceptor for HeaderDeadline<A> {
    type Io = Guarded<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((Guarded::new(io, self.timeout), local, remote, scheme))
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head; the deadline runs once `armed`.
    Head { armed: bool },
    /// The head arrived; the body and the handler have their own timeouts.
    Request,
    /// HTTP/2: no per-request heads to watch.
    Http2,
}

/// A connection's stream with the header deadline on it.
pub struct Guarded<Io> {
    inner: Io,
    timeout: Duration,
    phase: Phase,
    /// How much of [`END_OF_HEAD`] the last bytes read end with.
    matched: usize,
    /// Whether nothing has been read yet (to recognise the HTTP/2 preface).
    fresh: bool,
    deadline: Pin<Box<Sleep>>,
}

impl<Io> Guarded<Io> {
    fn new(inner: Io, timeout: Duration) -> Self {
        Guarded {
            inner,
            timeout,
            // The first request must start within the timeout of connecting.
            phase: Phase::Head { armed: true },
            matched: 0,
            fresh: true,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Follows the bytes just read: the HTTP/2 preface, the start and the end of a request head.
    fn read(&mut self, bytes: &[u8]) {
        if self.fresh {
            self.fresh = false;
            if bytes.starts_with(HTTP2_PREFACE) {
                self.phase = Phase::Http2;
            }
        }
        let Phase::Head { armed } = self.phase else {
            return;
        };
        if !armed {
            self.deadline.as_mut().reset(Instant::now() + self.timeout);
            self.phase = Phase::Head { armed: true };
        }
        for &b in bytes {
            self.matched = if b == END_OF_HEAD[self.matched] {
                self.matched + 1
            } else if b == END_OF_HEAD[0] {
                1
            } else {
                0
            };
            if self.matched == END_OF_HEAD.len() {
                self.phase = Phase::Request;
                self.matched = 0;
                return;
            }
        }
    }

    /// A final response is being written: the next bytes read start a new request head.
    fn wrote(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Request && !bytes.is_empty() && !bytes.starts_with(INTERIM) {
            self.phase = Phase::Head { armed: false };
            self.matched = 0;
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.phase, Phase::Head { armed: true })
            && self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the request head did not arrive within HEADER_TIMEOUT",
    )
}

impl<Io: AsyncRead + Unpin> AsyncRead for Guarded<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    this.read(new);
                }
                if this.expired(cx) {
                    return Poll::Ready(Err(timed_out()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Guarded<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.wrote(&buf[..n]);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            this.wrote(first);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded() -> Guarded<()> {
        Guarded::new((), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn a_head_split_across_reads_ends_at_the_empty_line() {
        let mut g = guarded();
        g.read(b"GET / HTTP/1.1\r\nHost: x\r");
        assert_eq!(g.phase, Phase::Head { armed: true });
        g.read(b"\n\r");
        g.read(b"\n");
        assert_eq!(g.phase, Phase::Request);
    }

    #[tokio::test]
    async fn a_final_response_starts_the_next_head_but_an_interim_one_does_not() {
        let mut g = guarded();
        g.read(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
        g.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(g.phase, Phase::Request);
        g.wrote(b"HTTP/1.1 201 Created\r\n");
        assert_eq!(g.phase, Phase::Head { armed: false });
        g.read(b"G");
        assert_eq!(g.phase, Phase::Head { armed: true });
    }

    #[tokio::test]
    async fn http2_connections_are_left_to_the_idle_timeout() {
        let mut g = guarded();
        g.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(g.phase, Phase::Http2);
    }
}
