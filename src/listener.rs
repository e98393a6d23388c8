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
    last_logged: Option<Instant>,
}

impl BoundedAcceptor {
    pub fn new(inner: TcpAcceptor, max_connections: usize, idle_timeout: Duration) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
            idle_timeout,
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
                        io,
                        _slot: slot,
                        idle_timeout: self.idle_timeout,
                        last_moved: tokio::time::Instant::now(),
                        deadline: Box::pin(tokio::time::sleep(self.idle_timeout)),
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
pub struct Counted {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    /// When a byte last moved; the timer is only moved when it fires, so a busy connection
    /// pays a clock read per read or write, not a timer re-registration.
    last_moved: tokio::time::Instant,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Counted {
    fn moved(&mut self) {
        self.last_moved = tokio::time::Instant::now();
    }

    /// Ready once no byte has moved for the idle timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.deadline.as_mut().poll(cx));
            let idle_until = self.last_moved + self.idle_timeout;
            if idle_until <= tokio::time::Instant::now() {
                return Poll::Ready(());
            }
            // Activity since the timer was set: wait out the rest from the last byte.
            self.deadline.as_mut().reset(idle_until);
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<IoResult<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
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
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<IoResult<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
