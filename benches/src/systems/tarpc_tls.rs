//! `tarpc-tls`: tarpc 0.38 calls over the same tokio-rustls stream as `raw-tls`, in
//! `tls-small` and `tls-rtt`. Set up as `tarpc`'s system does: a `#[tarpc::service]`
//! trait, tarpc's serde transport with its fastest format (`tokio_serde`'s bincode, in
//! length-delimited frames) over the TLS stream, the generated client
//! `InboxClient::new(client::Config::default(), transport).spawn()` called with
//! `context::current()`, and a server `BaseChannel::with_defaults(transport)
//! .execute(server.serve())` spawning a task per request, on a current-thread runtime
//! with a `LocalSet` in each process. Built with the features `tls-peers` and
//! `rpc-peers`.
//!
//! The sender's side is the client. A one-way message is a call of `deliver(Msg)`, whose
//! reply (`()`, or the receiver's complaint) is only waited for: [`IN_FLIGHT`] calls are
//! kept in flight (a new call starts as soon as one returns), and every call counts as a
//! message. The sequence number is taken when a call is first polled, which is when its
//! request goes into the client's queue, so the requests leave in order; the server runs
//! each request's task in the order they arrive (a `LocalSet` runs its tasks first in,
//! first out) and checks it with [`Checker`](crate::msg::Checker), so the stream is checked in order. A round
//! trip is a call of `echo(Msg)`, checked by the client.
//!
//! A tarpc server cannot send first, so there is no `Ready`: the receiver's clock starts
//! when its connection is ready (after the handshake, as the sender starts its calls then)
//! and stops at the last message; the pinger's first call, untimed, stands in for it.
//! Since tarpc moves messages at a fraction of the others' rate, it moves a tenth of the
//! messages in `tls-small` (see [`System::syscall_per_message`]).

use super::System;
use crate::BoxError;
use crate::process::ChildCmd;
use crate::workload::{Outcome, Role, Workload};

/// Calls the sender keeps in flight in `tls-small`.
pub(crate) const IN_FLIGHT: usize = 64;

/// Why tarpc-tls sits out when a feature is off.
const MISSING: &str = "unsupported: build with --features tls-peers,rpc-peers";

/// tarpc over TLS.
#[derive(Debug)]
pub(crate) struct TarpcTls;

impl System for TarpcTls {
    fn name(&self) -> &'static str {
        "tarpc-tls"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        matches!(workload, Workload::TlsSmall | Workload::TlsRtt)
    }

    fn unsupported(&self, _: Workload) -> Option<&'static str> {
        (!cfg!(all(feature = "tls-peers", feature = "rpc-peers"))).then_some(MISSING)
    }

    /// Not a system call per message, but as slow: a tenth of the messages keeps a run
    /// within seconds.
    fn syscall_per_message(&self) -> bool {
        true
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        #[cfg(all(feature = "tls-peers", feature = "rpc-peers"))]
        return imp::parent(child, role);
        #[cfg(not(all(feature = "tls-peers", feature = "rpc-peers")))]
        {
            let _ = (child, role);
            Err(MISSING.into())
        }
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        #[cfg(all(feature = "tls-peers", feature = "rpc-peers"))]
        return imp::child(role);
        #[cfg(not(all(feature = "tls-peers", feature = "rpc-peers")))]
        {
            let _ = role;
            Err(MISSING.into())
        }
    }
}

#[cfg(all(feature = "tls-peers", feature = "rpc-peers"))]
mod imp {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Instant;

    use futures_util::StreamExt;
    use futures_util::stream::FuturesUnordered;
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::tokio_serde::formats::Bincode;
    use tarpc::{client, context, serde_transport};
    use tokio::io::{AsyncRead, AsyncWrite};

    use super::super::{on_local_runtime, unexpected};
    use super::IN_FLIGHT;
    use crate::BoxError;
    use crate::msg::{Checker, Msg, Source};
    use crate::net;
    use crate::process::ChildCmd;
    use crate::workload::{Outcome, Role, Stream};

    /// The service: takes one-way messages, and echoes.
    #[tarpc::service]
    pub(super) trait Inbox {
        /// Takes the next message of the stream: an error if it is not the one expected.
        async fn deliver(msg: Msg) -> Result<(), String>;
        /// Sends `msg` back.
        async fn echo(msg: Msg) -> Msg;
    }

    /// The server: checks the stream it receives (none for the echoer).
    #[derive(Clone)]
    struct Receiving(Rc<RefCell<Tally>>);

    /// What the server saw.
    struct Tally {
        /// The stream's checker; `None` for the echoer.
        checker: Option<Checker>,
        /// When the connection was ready.
        start: Instant,
        /// When the last message of the stream arrived.
        last: Option<Instant>,
        /// The first message that failed its check.
        error: Option<String>,
    }

    impl Receiving {
        fn new(checker: Option<Checker>) -> Receiving {
            Receiving(Rc::new(RefCell::new(Tally {
                checker,
                start: Instant::now(),
                last: None,
                error: None,
            })))
        }
    }

    impl Inbox for Receiving {
        async fn deliver(self, _: context::Context, msg: Msg) -> Result<(), String> {
            let mut tally = self.0.borrow_mut();
            let tally = &mut *tally;
            let Some(checker) = &mut tally.checker else {
                return Err("this end only echoes".into());
            };
            if let Err(e) = checker.check(&msg) {
                tally.error.get_or_insert_with(|| e.clone());
                return Err(e);
            }
            if checker.remaining() == 0 {
                tally.last = Some(Instant::now());
            }
            Ok(())
        }

        async fn echo(self, _: context::Context, msg: Msg) -> Msg {
            msg
        }
    }

    pub(super) fn parent(child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        let tls = net::Tls::new()?;
        on_local_runtime(async {
            let (stream, mut child) = net::accept_tls(child, &tls).await?;
            let outcome = play(stream, role).await?;
            net::exited(&mut child).await?;
            Ok(outcome)
        })?
    }

    pub(super) fn child(role: &Role) -> Result<Outcome, BoxError> {
        on_local_runtime(async { play(net::connect_tls().await?, role).await })?
    }

    async fn play<S>(io: S, role: &Role) -> Result<Outcome, BoxError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        match role {
            Role::Send(stream) => send(&connect(io), stream).await,
            Role::Ping { count, .. } => ping(&connect(io), *count).await,
            Role::Recv(stream) => {
                let checker = Checker::new(stream.shape, stream.senders, stream.per_sender);
                let receiving = Receiving::new(Some(checker));
                serve(io, receiving.clone()).await;
                let tally = receiving.0.borrow();
                if let Some(e) = &tally.error {
                    return Err(e.clone().into());
                }
                if let Some(checker) = &tally.checker {
                    checker.check_end()?;
                }
                let last = tally.last.ok_or("no message arrived")?;
                Ok(Outcome::timed(last - tally.start))
            }
            Role::Echo => {
                serve(io, Receiving::new(None)).await;
                Ok(Outcome::default())
            }
            _ => Err(format!("{role:?} is no message role").into()),
        }
    }

    /// The client over `io`, its dispatch spawned.
    fn connect<S>(io: S) -> InboxClient
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let transport = serde_transport::Transport::from((io, Bincode::default()));
        InboxClient::new(client::Config::default(), transport).spawn()
    }

    /// Serves requests until the client goes, each in a task of its own.
    async fn serve<S: AsyncRead + AsyncWrite + 'static>(io: S, receiving: Receiving) {
        let transport = serde_transport::Transport::from((io, Bincode::default()));
        BaseChannel::with_defaults(transport)
            .execute(receiving.serve())
            .for_each(|response| async move {
                tokio::task::spawn_local(response);
            })
            .await;
    }

    /// Delivers the stream as calls, [`IN_FLIGHT`] at a time.
    async fn send(client: &InboxClient, stream: &Stream) -> Result<Outcome, BoxError> {
        if stream.senders != 1 {
            return Err(format!("{} senders; these workloads have one", stream.senders).into());
        }
        let source = Source::new(stream.shape, 0);
        let next = Cell::new(0);
        let (source, next) = (&source, &next);
        // The sequence number is taken at the first poll, when the request is queued.
        let deliver = move || async move {
            let seq = next.get();
            next.set(seq + 1);
            client.deliver(context::current(), source.msg(seq)).await
        };
        let mut in_flight = FuturesUnordered::new();
        let mut started = 0;
        loop {
            while started < stream.per_sender && in_flight.len() < IN_FLIGHT {
                in_flight.push(deliver());
                started += 1;
            }
            match in_flight.next().await {
                Some(reply) => reply?.map_err(|e| format!("the receiver: {e}"))?,
                None => break,
            }
        }
        Ok(Outcome::default())
    }

    /// Makes `count` timed round trips of `echo`, after an untimed one.
    async fn ping(client: &InboxClient, count: u64) -> Result<Outcome, BoxError> {
        match client.echo(context::current(), Msg::Ready).await? {
            Msg::Ready => {}
            other => return Err(unexpected("Ready", Some(&other))),
        }
        let mut latencies = Vec::with_capacity(count as usize);
        for i in 0..count {
            let start = Instant::now();
            match client.echo(context::current(), Msg::Ping(i)).await? {
                Msg::Ping(j) if j == i => latencies.push(start.elapsed()),
                other => return Err(unexpected(&format!("Ping({i})"), Some(&other))),
            }
        }
        Ok(Outcome::latencies(latencies))
    }
}
