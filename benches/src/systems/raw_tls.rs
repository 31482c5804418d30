//! `raw-tls`, the baseline of the TLS workloads: the fastest honest use of tokio-rustls.
//! One `TlsStream` over TCP on the loopback (`TCP_NODELAY`), `raw`'s hand-written frames
//! (a `u32` LE length, then the message in bincode 2 standard) written and read through
//! tokio's `AsyncWrite` and `AsyncRead` behind a `BufStream` of 64 KiB each way, flushed
//! only when the other side needs the bytes (after `Ready`, each ping or echo, the end),
//! one task on a current-thread runtime in each process. Built with the feature
//! `tls-peers`; the parent listens (see [`crate::net`]).
//!
//! The end of a stream is `shutdown`: TLS `close_notify`, then TCP `FIN`. Each side, once
//! done, shuts its direction down and reads the other's to its end, so that neither
//! process exits with bytes unread (which would reset the connection under the other).

use super::System;
use crate::BoxError;
use crate::net;
use crate::process::ChildCmd;
use crate::workload::{Outcome, Role, Workload};

/// Raw frames over tokio-rustls.
#[derive(Debug)]
pub(crate) struct RawTls;

impl System for RawTls {
    fn name(&self) -> &'static str {
        "raw-tls"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_tls()
    }

    fn unsupported(&self, _: Workload) -> Option<&'static str> {
        (!cfg!(feature = "tls-peers")).then_some(net::TLS_MISSING)
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        #[cfg(feature = "tls-peers")]
        return imp::parent(child, role);
        #[cfg(not(feature = "tls-peers"))]
        {
            let _ = (child, role);
            Err(net::TLS_MISSING.into())
        }
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        #[cfg(feature = "tls-peers")]
        return imp::child(role);
        #[cfg(not(feature = "tls-peers"))]
        {
            let _ = role;
            Err(net::TLS_MISSING.into())
        }
    }
}

#[cfg(feature = "tls-peers")]
mod imp {
    use std::time::{Duration, Instant};

    use tokio::io::BufStream;
    use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::super::raw::{BUF, MAX_FRAME, decode_frame, encode_frame};
    use super::super::unexpected;
    use crate::BoxError;
    use crate::msg::{Checker, Msg, Source};
    use crate::net;
    use crate::process::ChildCmd;
    use crate::workload::{Outcome, Role, Stream};

    pub(super) fn parent(child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        let tls = net::Tls::new()?;
        runtime()?.block_on(async {
            let (stream, mut child) = net::accept_tls(child, &tls).await?;
            let outcome = play(Frames::new(stream), role).await?;
            net::exited(&mut child).await?;
            Ok(outcome)
        })
    }

    pub(super) fn child(role: &Role) -> Result<Outcome, BoxError> {
        runtime()?.block_on(async { play(Frames::new(net::connect_tls().await?), role).await })
    }

    fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }

    /// Frames over a buffered TLS stream.
    struct Frames<S> {
        io: BufStream<S>,
        /// The frame being written.
        frame: Vec<u8>,
        /// The payload being read.
        buf: Vec<u8>,
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> Frames<S> {
        fn new(stream: S) -> Frames<S> {
            Frames {
                io: BufStream::with_capacity(BUF, BUF, stream),
                frame: Vec::new(),
                buf: Vec::new(),
            }
        }

        /// Encodes `msg` as one frame and hands it to the buffer in one `write_all`.
        async fn write(&mut self, msg: &Msg) -> Result<(), BoxError> {
            encode_frame(&mut self.frame, msg)?;
            self.io.write_all(&self.frame).await?;
            Ok(())
        }

        async fn flush(&mut self) -> std::io::Result<()> {
            self.io.flush().await
        }

        /// The next message, or `None` at a clean end of stream (`close_notify`, between
        /// frames).
        async fn read(&mut self) -> Result<Option<Msg>, BoxError> {
            if self.io.fill_buf().await?.is_empty() {
                return Ok(None);
            }
            let mut header = [0; 4];
            self.io.read_exact(&mut header).await?;
            let len = u32::from_le_bytes(header) as usize;
            if len > MAX_FRAME {
                return Err(format!("frame of {len} bytes").into());
            }
            if self.buf.len() < len {
                self.buf.resize(len, 0);
            }
            let payload = &mut self.buf[..len];
            self.io.read_exact(payload).await?;
            Ok(Some(decode_frame(payload)?))
        }

        /// Flushes, shuts this direction down, and reads the peer's to its end: nothing
        /// may come after.
        async fn finish(&mut self) -> Result<(), BoxError> {
            self.io.shutdown().await?;
            match self.read().await? {
                None => Ok(()),
                Some(msg) => Err(unexpected("the close", Some(&msg))),
            }
        }

        async fn wait_ready(&mut self) -> Result<(), BoxError> {
            match self.read().await? {
                Some(Msg::Ready) => Ok(()),
                other => Err(unexpected("Ready", other.as_ref())),
            }
        }
    }

    async fn play<S: AsyncRead + AsyncWrite + Unpin>(
        mut io: Frames<S>,
        role: &Role,
    ) -> Result<Outcome, BoxError> {
        let outcome = match role {
            Role::Send(stream) => send(&mut io, stream).await?,
            Role::Recv(stream) => recv(&mut io, stream).await?,
            Role::Ping { count, .. } => ping(&mut io, *count).await?,
            Role::Echo => echo(&mut io).await?,
            _ => return Err(format!("{role:?} is no message role").into()),
        };
        io.finish().await?;
        Ok(outcome)
    }

    async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        io: &mut Frames<S>,
        stream: &Stream,
    ) -> Result<Outcome, BoxError> {
        if stream.senders != 1 {
            return Err(format!("{} senders; these workloads have one", stream.senders).into());
        }
        io.wait_ready().await?;
        let source = Source::new(stream.shape, 0);
        for seq in 0..stream.per_sender {
            io.write(&source.msg(seq)).await?;
        }
        Ok(Outcome::default())
    }

    async fn recv<S: AsyncRead + AsyncWrite + Unpin>(
        io: &mut Frames<S>,
        stream: &Stream,
    ) -> Result<Outcome, BoxError> {
        let mut checker = Checker::new(stream.shape, stream.senders, stream.per_sender);
        io.write(&Msg::Ready).await?;
        io.flush().await?;
        let start = Instant::now();
        if stream.delay > Duration::ZERO {
            tokio::time::sleep(stream.delay).await;
        }
        while checker.remaining() > 0 {
            match io.read().await? {
                Some(msg) => checker.check(&msg)?,
                None => break,
            }
        }
        let elapsed = start.elapsed();
        checker.check_end()?;
        match io.read().await? {
            None => Ok(Outcome::timed(elapsed)),
            Some(msg) => Err(unexpected("the close", Some(&msg))),
        }
    }

    async fn ping<S: AsyncRead + AsyncWrite + Unpin>(
        io: &mut Frames<S>,
        count: u64,
    ) -> Result<Outcome, BoxError> {
        io.wait_ready().await?;
        let mut latencies = Vec::with_capacity(count as usize);
        for i in 0..count {
            let start = Instant::now();
            io.write(&Msg::Ping(i)).await?;
            io.flush().await?;
            match io.read().await? {
                Some(Msg::Ping(j)) if j == i => latencies.push(start.elapsed()),
                other => return Err(unexpected(&format!("Ping({i})"), other.as_ref())),
            }
        }
        Ok(Outcome::latencies(latencies))
    }

    async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
        io: &mut Frames<S>,
    ) -> Result<Outcome, BoxError> {
        io.write(&Msg::Ready).await?;
        io.flush().await?;
        while let Some(msg) = io.read().await? {
            io.write(&msg).await?;
            io.flush().await?;
        }
        Ok(Outcome::default())
    }
}
