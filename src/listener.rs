//! The listening socket, bounded: at most `max_connections` open at once (the rest wait in the
//! kernel's backlog), and an `accept` that fails (no descriptors left) is logged and backed off
//! instead of retried in a tight loop.
use std::future::Future;
use std::io::Result as IoResult;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept free for the database, files and the process itself.
const HEADROOM: usize = 64;

/// The connection limit when none is configured: the descriptor limit less the headroom.
pub fn default_max_connections() -> usize {
    open_files_limit()
        .map(|n| n.saturating_sub(HEADROOM).max(16))
        .unwrap_or(1024)
}

/// The soft `RLIMIT_NOFILE`, as /proc reports it.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub struct BoundedAcceptor {
    inner: TcpAcceptor,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
    first_byte_timeout: Duration,
    last_logged: Option<Instant>,
}

impl BoundedAcceptor {
    /// `first_byte_timeout` bounds a connection that has sent nothing yet (it would otherwise
    /// hold its slot for the whole idle timeout).
    pub fn new(
        inner: TcpAcceptor,
        max_connections: usize,
        idle_timeout: Duration,
        first_byte_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
            idle_timeout,
            first_byte_timeout: first_byte_timeout.min(idle_timeout),
            last_logged: None,
        }
    }
}

impl Acceptor for BoundedAcceptor {
    type Io = Counted;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> IoResult<(Counted, LocalAddr, RemoteAddr, Scheme)> {
        // A slot first: beyond the limit, connections wait in the backlog, unaccepted.
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.inner.accept().await {
                Ok((io, local, remote, scheme)) => {
                    let counted = Counted {
                        io: Some(io),
                        slot: Some(slot),
                        idle_timeout: self.idle_timeout,
                        first_byte_timeout: self.first_byte_timeout,
                        last_moved: tokio::time::Instant::now(),
                        deadline: Box::pin(tokio::time::sleep(self.first_byte_timeout)),
                        protocol: Protocol::Unknown,
                        unanswered: false,
                        replacement: None,
                        closing: false,
                        draining: false,
                        drained_all: false,
                        drained: 0,
                    };
                    return Ok((counted, local, remote, scheme));
                }
                Err(e) => {
                    // poem retries a failed accept at once; out of descriptors that spins a
                    // core. Log at most once a minute, and wait before trying again.
                    if self
                        .last_logged
                        .is_none_or(|at| at.elapsed() > Duration::from_secs(60))
                    {
                        tracing::error!(error = %e, "cannot accept connections; backing off");
                        self.last_logged = Some(Instant::now());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// A connection holding its slot until it is dropped, and failing its reads once no byte has
/// moved either way for the idle timeout: a stalled request line, header or body, or an idle
/// keep-alive, ends there (hyper's own graceful close would wait for the unfinished request).
///
/// On HTTP/1 it also gives the answers hyper makes itself the contract's body: hyper writes its
/// 400/414/431 with an empty body and has no hook for them, and says nothing at all when it drops
/// a request whose head did not arrive in time (408 here).
pub struct Counted {
    /// Taken only when dropped, by the task that drains it.
    io: Option<TcpStream>,
    slot: Option<OwnedSemaphorePermit>,
    idle_timeout: Duration,
    first_byte_timeout: Duration,
    /// When a byte last moved; the timer is only moved when it fires, so a busy connection
    /// pays a clock read per read or write, not a timer re-registration.
    last_moved: tokio::time::Instant,
    deadline: Pin<Box<tokio::time::Sleep>>,
    protocol: Protocol,
    /// Bytes arrived since the last answer was written: a request is under way.
    unanswered: bool,
    /// An answer of ours replacing the one hyper is writing, and how far it has gone out.
    replacement: Option<(Vec<u8>, usize)>,
    /// The last answer is out (or shutdown began): what still arrives is drained, not answered.
    closing: bool,
    draining: bool,
    /// The bounded drain ran to its end (else the drop finishes it).
    drained_all: bool,
    drained: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Unknown,
    Http1,
    Http2,
}

/// What is read and thrown away after the last answer so that closing with unread bytes does not
/// reset the connection before the client has read the answer (a 413 to a large upload).
const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A complete HTTP/1.1 answer in the contract's shape (google.rpc.Status JSON), closing.
fn status_answer(status: &str, code: i32, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// hyper's own answer to a request it could not parse, recognised by its exact head (our
/// handlers never answer an error with an empty body), with ours in its place.
fn replacement_for(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let automatic = |status: &[u8]| {
        rest.starts_with(status)
            && head
                .windows(40)
                .any(|w| w == b"\r\nconnection: close\r\ncontent-length: 0\r\n")
    };
    if automatic(b"400 ") {
        Some(status_answer(
            "400 Bad Request",
            3,
            "malformed HTTP request",
        ))
    } else if automatic(b"414 ") {
        Some(status_answer("414 URI Too Long", 3, "request URI too long"))
    } else if automatic(b"431 ") {
        Some(status_answer(
            "431 Request Header Fields Too Large",
            3,
            "request header fields too large",
        ))
    } else {
        None
    }
}

impl Counted {
    fn moved(&mut self) {
        self.last_moved = tokio::time::Instant::now();
    }

    /// Ready once no byte has moved for the idle timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.deadline.as_mut().poll(cx));
            let limit = if self.protocol == Protocol::Unknown {
                self.first_byte_timeout
            } else {
                self.idle_timeout
            };
            let idle_until = self.last_moved + limit;
            if idle_until <= tokio::time::Instant::now() {
                return Poll::Ready(());
            }
            // Activity since the timer was set: wait out the rest from the last byte.
            self.deadline.as_mut().reset(idle_until);
        }
    }

    fn saw_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.moved();
        if self.protocol == Protocol::Unknown {
            self.protocol = if b"PRI * HTTP/2.0".starts_with(&bytes[..bytes.len().min(14)]) {
                Protocol::Http2
            } else {
                Protocol::Http1
            };
        }
        if !self.closing {
            self.unanswered = true;
        }
    }

    fn saw_write(&mut self, written: &[u8]) {
        if written.is_empty() {
            return;
        }
        self.moved();
        self.unanswered = false;
        // After an answer that closes the connection, whatever still arrives is the rest of a
        // refused upload, not a request waiting for an answer.
        if written.starts_with(b"HTTP/1.1 ")
            && written
                .windows(21)
                .any(|w| w.eq_ignore_ascii_case(b"\r\nconnection: close\r\n"))
        {
            self.closing = true;
        }
    }

    /// Writes our replacement to its end, then reports hyper's `reported` bytes as written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>, reported: usize) -> Poll<IoResult<usize>> {
        while let Some((bytes, sent)) = self.replacement.as_mut() {
            if *sent == bytes.len() {
                break;
            }
            let io = self.io.as_mut().expect("present until dropped");
            let n = ready!(Pin::new(io).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
            self.moved();
        }
        self.unanswered = false;
        Poll::Ready(Ok(reported))
    }

    /// Starts replacing hyper's automatic answer when `head` is one.
    fn intercept(&mut self, head: &[u8]) -> bool {
        if self.protocol != Protocol::Http1 || self.replacement.is_some() {
            return false;
        }
        match replacement_for(head) {
            Some(ours) => {
                self.replacement = Some((ours, 0));
                true
            }
            None => false,
        }
    }

    /// A request hyper dropped half-read (its head came too slowly, or the connection idled
    /// mid-request) gets a 408, best effort: the socket buffer of a stalled connection has room.
    fn answer_abandoned(&mut self) -> bool {
        if self.protocol == Protocol::Http1 && self.unanswered && self.replacement.is_none() {
            self.unanswered = false;
            let answer = status_answer("408 Request Timeout", 4, "request not received in time");
            return self.io().try_write(&answer).is_ok();
        }
        false
    }

    fn io(&mut self) -> &mut TcpStream {
        self.io.as_mut().expect("present until dropped")
    }

    /// After the last answer: discard what the client still sends, up to a bound.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.protocol != Protocol::Http1 {
            return Poll::Ready(());
        }
        let mut chunk = [0u8; 8192];
        while self.drained < DRAIN_BYTES {
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(self.io()).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => self.drained += buf.filled().len(),
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return self.deadline.as_mut().poll(cx),
            }
        }
        Poll::Ready(())
    }
}

impl Drop for Counted {
    /// hyper drops a connection it gave up on (a timed-out head, a parse error) without
    /// shutting it down; closing a socket with unread bytes resets it, and the client may then
    /// lose the answer just written. So a connection that got a last answer is drained by a
    /// task of its own, bounded, keeping its slot until then.
    fn drop(&mut self) {
        let answered = !self.closing && self.answer_abandoned();
        let last_answer_out = answered || self.closing || self.replacement.is_some();
        if self.protocol != Protocol::Http1 || self.drained_all || !last_answer_out {
            return;
        }
        let (Some(io), Ok(runtime)) = (self.io.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let slot = self.slot.take();
        runtime.spawn(async move {
            drain(io).await;
            drop(slot);
        });
    }
}

/// Half-closes `io` (the client sees the end of the answer), then reads away what it still
/// sends, at most `DRAIN_BYTES` within `DRAIN_TIME`.
async fn drain(mut io: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let _ = io.shutdown().await;
        let mut chunk = [0u8; 8192];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<IoResult<()>> {
        let before = buf.filled().len();
        match Pin::new(self.io()).poll_read(cx, buf) {
            Poll::Ready(result) => {
                self.saw_read(&buf.filled()[before..]);
                Poll::Ready(result)
            }
            Poll::Pending => match self.poll_idle(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<IoResult<usize>> {
        if self.replacement.is_some() || self.intercept(buf) {
            return self.poll_replacement(cx, buf.len());
        }
        let written = Pin::new(self.io()).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.saw_write(&buf[..n]);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(self.io()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        if !self.draining {
            self.answer_abandoned();
            self.closing = true;
            self.draining = true;
            let drain_until = tokio::time::Instant::now() + DRAIN_TIME;
            self.deadline.as_mut().reset(drain_until);
        }
        // The answer and our FIN first, so the client reads the answer whole; then what it is
        // still sending is read away, within bounds, before the socket closes.
        ready!(Pin::new(self.io()).poll_shutdown(cx))?;
        ready!(self.poll_drain(cx));
        self.drained_all = true;
        Poll::Ready(Ok(()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<IoResult<usize>> {
        let head = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if self.replacement.is_some() || self.intercept(head) {
            let reported = bufs.iter().map(|b| b.len()).sum();
            return self.poll_replacement(cx, reported);
        }
        let written = Pin::new(self.io()).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            self.saw_write(&head[..n.min(head.len())]);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }
}
