//! iceoryx2 in the `shm-4m` workload: zero-copy publish-subscribe over shared memory, a
//! benchmark-only dependency behind the feature `shm-peers` (so that `cargo test
//! --workspace` never builds it; without it the row says so).
//!
//! Used as its `publish_subscribe_dynamic_data` example shows: a node of `ipc::Service`,
//! a `publish_subscribe::<[u8]>()` service, a publisher made for slices of 4 MiB
//! (`initial_max_slice_len`), each payload written in place into a loaned sample
//! (`loan_slice`, zeroed, then filled by [`fill`](crate::resource::fill)) and sent; the subscriber reads every byte of
//! each received sample's payload. Two settings differ from its defaults, so that no
//! sample is lost: `enable_safe_overflow(false)` (the default overwrites the oldest
//! sample when the subscriber's buffer is full) with the default back-pressure,
//! `RetryUntilDelivered`; and a subscriber buffer of [`BUFFER`] samples. The parent
//! creates the service before it starts the child (its name, unique to the run, in an
//! environment variable), the child opens it.
//!
//! iceoryx2's subscriber has no blocking receive (its examples poll at a cycle time, or
//! wait on an event service beside it), so the receiver polls `receive` in a loop,
//! yielding the CPU when nothing is there. `Ready` (the subscriber exists) and the end
//! (every sample was read, so the publisher, whose memory holds them, may go) are one byte
//! each over a socketpair on the child's stdin, as in `raw`.

use super::System;
use crate::BoxError;
use crate::process::ChildCmd;
use crate::workload::{Outcome, Role, Workload};

/// Why iceoryx2 sits out when the feature is off (here and in its round-trip systems).
pub(super) const MISSING: &str = "unsupported: build with --features shm-peers";

/// Samples the subscriber's buffer holds before the publisher waits.
#[cfg_attr(not(feature = "shm-peers"), allow(dead_code))]
const BUFFER: usize = 4;

/// iceoryx2.
#[derive(Debug)]
pub(crate) struct Iceoryx2;

impl System for Iceoryx2 {
    fn name(&self) -> &'static str {
        "iceoryx2"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload == Workload::Shm4M
    }

    fn unsupported(&self, _: Workload) -> Option<&'static str> {
        (!cfg!(feature = "shm-peers")).then_some(MISSING)
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        #[cfg(feature = "shm-peers")]
        return imp::parent(child, role);
        #[cfg(not(feature = "shm-peers"))]
        {
            let _ = (child, role);
            Err(MISSING.into())
        }
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        #[cfg(feature = "shm-peers")]
        return imp::child(role);
        #[cfg(not(feature = "shm-peers"))]
        {
            let _ = role;
            Err(MISSING.into())
        }
    }
}

#[cfg(feature = "shm-peers")]
pub(super) mod imp {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    use iceoryx2::port::update_connections::UpdateConnections;
    use iceoryx2::prelude::*;
    use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

    use super::BUFFER;
    use crate::BoxError;
    use crate::msg::Shape;
    use crate::process::{ChildCmd, wait_std};
    use crate::resource::{Tally, fill};
    use crate::systems::{stdin_socket, stdin_socket_child};
    use crate::workload::{Outcome, Role, Stream};

    /// The environment variable with the service's name.
    const ENV_SERVICE: &str = "AIOSOCK_BENCH_ICEORYX2_SERVICE";
    /// The byte the receiver sends once its subscriber exists.
    const READY: u8 = b'R';
    /// The byte the receiver sends once it has read every sample.
    const DONE: u8 = b'D';

    /// The service of one run.
    type Service = PortFactory<ipc::Service, [u8], ()>;

    /// The parent's side: creates the service, starts the child, plays `role`.
    pub(super) fn parent(mut child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        set_log_level(LogLevel::Error);
        let name = format!("aiosock-benches/shm-4m/{}", std::process::id());
        let node = NodeBuilder::new().create::<ipc::Service>()?;
        let service = service(&node, &name, true)?;
        child.command_mut().env(ENV_SERVICE, &name);
        let (control, mut child) = stdin_socket(child)?;
        let outcome = play(control, &service, role)?;
        wait_std(&mut child)?;
        Ok(outcome)
    }

    /// The child's side: opens the parent's service and plays `role`.
    pub(super) fn child(role: &Role) -> Result<Outcome, BoxError> {
        set_log_level(LogLevel::Error);
        let name = std::env::var(ENV_SERVICE)?;
        let node = NodeBuilder::new().create::<ipc::Service>()?;
        let service = service(&node, &name, false)?;
        play(stdin_socket_child()?, &service, role)
    }

    /// The run's publish-subscribe service of byte slices, created or opened.
    fn service(node: &Node<ipc::Service>, name: &str, create: bool) -> Result<Service, BoxError> {
        let name = ServiceName::new(name)?;
        let builder = node
            .service_builder(&name)
            .publish_subscribe::<[u8]>()
            .enable_safe_overflow(false)
            .subscriber_max_buffer_size(BUFFER)
            .history_size(0)
            .max_publishers(1)
            .max_subscribers(1);
        Ok(if create {
            builder.create()?
        } else {
            builder.open()?
        })
    }

    fn play(control: UnixStream, service: &Service, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Send(stream) => send(control, service, stream),
            Role::Recv(stream) => recv(control, service, stream),
            _ => Err("iceoryx2 takes part in shm-4m only".into()),
        }
    }

    fn send(
        mut control: UnixStream,
        service: &Service,
        stream: &Stream,
    ) -> Result<Outcome, BoxError> {
        let Shape::Shm(len) = stream.shape else {
            return Err(format!("a {} stream is no shm stream", stream.shape).into());
        };
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(len)
            .create()?;
        expect_byte(&mut control, READY, "Ready")?;
        publisher.update_connections()?;
        for seq in 0..stream.per_sender {
            let mut sample = publisher.loan_slice(len)?;
            fill(seq, sample.payload_mut());
            sample.send()?;
        }
        expect_byte(&mut control, DONE, "the end")?;
        Ok(Outcome::default())
    }

    fn recv(
        mut control: UnixStream,
        service: &Service,
        stream: &Stream,
    ) -> Result<Outcome, BoxError> {
        let mut tally = Tally::new(stream)?;
        let subscriber = service.subscriber_builder().create()?;
        control.write_all(&[READY])?;
        let start = Instant::now();
        while tally.remaining() > 0 {
            match subscriber.receive()? {
                Some(sample) => tally.payload(sample.payload())?,
                None => std::thread::yield_now(),
            }
        }
        let elapsed = start.elapsed();
        control.write_all(&[DONE])?;
        Ok(Outcome::timed(elapsed))
    }

    /// Reads one control byte, which must be `byte`.
    pub(in crate::systems) fn expect_byte(
        control: &mut UnixStream,
        byte: u8,
        what: &str,
    ) -> Result<(), BoxError> {
        let mut got = [0];
        control.read_exact(&mut got)?;
        if got == [byte] {
            Ok(())
        } else {
            Err(format!("expected {what}, got byte {}", got[0]).into())
        }
    }
}
