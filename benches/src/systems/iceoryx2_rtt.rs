//! iceoryx2 in the `rtt` workload, in its two ways of waiting (issue 14's anchor for the
//! low-latency mode), behind the feature `shm-peers` like [`super::iceoryx2`]:
//!
//! - `iceoryx2-poll`: both sides busy-poll their subscriber (`receive` in a loop, never
//!   yielding): each keeps a core busy for the whole run;
//! - `iceoryx2-wait`: each sample is followed by a notification on an event service beside
//!   it, and a side with nothing to read blocks in its listener's `blocking_wait` (as the
//!   examples pair publish-subscribe with events).
//!
//! The pinger publishes `u64` `i` on one publish-subscribe service and waits for the echo
//! of `i` on a second, as `rtt` does for every system; the echoer sends back what it reads.
//! Both services have a history of 0 and one port at each end. The parent creates the
//! services (names unique to the run, in an environment variable) before it starts the
//! child; `Ready` (the child's ports exist) is one byte over a socketpair on the child's
//! stdin, as in `raw`; the end is the value [`END`], which the echoer does not send back.

use super::System;
use crate::BoxError;
use crate::process::ChildCmd;
use crate::workload::{Outcome, Role, Workload};

use super::iceoryx2::MISSING;

/// The value that tells the echoer the run is over.
#[cfg_attr(not(feature = "shm-peers"), allow(dead_code))]
const END: u64 = u64::MAX;

/// iceoryx2's round trip, busy-polling or blocking.
#[derive(Debug)]
pub(crate) struct Iceoryx2Rtt {
    /// Block in an event listener instead of polling.
    wait: bool,
}

impl Iceoryx2Rtt {
    pub(crate) const POLL: Iceoryx2Rtt = Iceoryx2Rtt { wait: false };
    pub(crate) const WAIT: Iceoryx2Rtt = Iceoryx2Rtt { wait: true };
}

impl System for Iceoryx2Rtt {
    fn name(&self) -> &'static str {
        if self.wait {
            "iceoryx2-wait"
        } else {
            "iceoryx2-poll"
        }
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload == Workload::Rtt
    }

    fn unsupported(&self, _: Workload) -> Option<&'static str> {
        (!cfg!(feature = "shm-peers")).then_some(MISSING)
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        #[cfg(feature = "shm-peers")]
        return imp::parent(child, role, self.wait);
        #[cfg(not(feature = "shm-peers"))]
        {
            let _ = (child, role);
            Err(MISSING.into())
        }
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        #[cfg(feature = "shm-peers")]
        return imp::child(role, self.wait);
        #[cfg(not(feature = "shm-peers"))]
        {
            let _ = role;
            Err(MISSING.into())
        }
    }
}

#[cfg(feature = "shm-peers")]
mod imp {
    use std::io::Write;
    use std::time::Instant;

    use iceoryx2::port::listener::Listener;
    use iceoryx2::port::notifier::Notifier;
    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::port::subscriber::Subscriber;
    use iceoryx2::port::update_connections::UpdateConnections;
    use iceoryx2::prelude::*;

    use super::END;
    use crate::BoxError;
    use crate::msg::Shape;
    use crate::process::{ChildCmd, wait_std};
    use crate::systems::iceoryx2::imp::expect_byte;
    use crate::systems::{stdin_socket, stdin_socket_child};
    use crate::workload::{Outcome, Role};

    /// The environment variable with the services' common prefix.
    const ENV_PREFIX: &str = "AIOSOCK_BENCH_ICEORYX2_RTT";
    /// The byte the echoer sends once its ports exist.
    const READY: u8 = b'R';

    /// One side's ports: what it sends on, what it reads, and (when waiting) its event
    /// ports.
    struct Ports {
        node: Node<ipc::Service>,
        publisher: Publisher<ipc::Service, u64, ()>,
        subscriber: Subscriber<ipc::Service, u64, ()>,
        events: Option<(Notifier<ipc::Service>, Listener<ipc::Service>)>,
    }

    impl Ports {
        /// The ports of the side that sends on `out` and reads `inbound` (service names
        /// under `prefix`), creating the services or opening them.
        fn new(
            prefix: &str,
            out: &str,
            inbound: &str,
            create: bool,
            wait: bool,
        ) -> Result<Ports, BoxError> {
            let node = NodeBuilder::new().create::<ipc::Service>()?;
            let samples = |name: &str| -> Result<_, BoxError> {
                let name = ServiceName::new(&format!("{prefix}/{name}"))?;
                let builder = node
                    .service_builder(&name)
                    .publish_subscribe::<u64>()
                    .history_size(0)
                    .max_publishers(1)
                    .max_subscribers(1);
                Ok(if create {
                    builder.create()?
                } else {
                    builder.open()?
                })
            };
            let events = |name: &str| -> Result<_, BoxError> {
                let name = ServiceName::new(&format!("{prefix}/{name}-event"))?;
                let builder = node.service_builder(&name).event();
                Ok(if create {
                    builder.create()?
                } else {
                    builder.open()?
                })
            };
            let (out_service, in_service) = (samples(out)?, samples(inbound)?);
            let publisher = out_service.publisher_builder().create()?;
            let subscriber = in_service.subscriber_builder().create()?;
            let events = if wait {
                let notifier = events(out)?.notifier_builder().create()?;
                let listener = events(inbound)?.listener_builder().create()?;
                Some((notifier, listener))
            } else {
                None
            };
            Ok(Ports {
                node,
                publisher,
                subscriber,
                events,
            })
        }

        fn send(&self, value: u64) -> Result<(), BoxError> {
            self.publisher.send_copy(value)?;
            if let Some((notifier, _)) = &self.events {
                notifier.notify()?;
            }
            Ok(())
        }

        /// The next value that arrives: polled for without a pause, or waited for in the
        /// listener once nothing is there.
        fn receive(&self) -> Result<u64, BoxError> {
            loop {
                if let Some(sample) = self.subscriber.receive()? {
                    return Ok(*sample.payload());
                }
                match &self.events {
                    Some((_, listener)) => {
                        listener.blocking_wait(|_| {})?;
                    }
                    None => std::hint::spin_loop(),
                }
            }
        }
    }

    /// The pinger: creates the services, starts the child, makes the round trips.
    pub(super) fn parent(
        mut child: ChildCmd,
        role: &Role,
        wait: bool,
    ) -> Result<Outcome, BoxError> {
        let Role::Ping {
            count,
            shape: Shape::Ping,
        } = *role
        else {
            return Err("iceoryx2's round trips take part in rtt only".into());
        };
        set_log_level(LogLevel::Error);
        let prefix = format!("aiosock-benches/rtt/{}", std::process::id());
        let ports = Ports::new(&prefix, "ping", "pong", true, wait)?;
        child.command_mut().env(ENV_PREFIX, &prefix);
        let (mut control, mut child) = stdin_socket(child)?;
        expect_byte(&mut control, READY, "Ready")?;
        ports.publisher.update_connections()?;
        let mut latencies = Vec::with_capacity(count as usize);
        for i in 0..count {
            let start = Instant::now();
            ports.send(i)?;
            let echoed = ports.receive()?;
            latencies.push(start.elapsed());
            if echoed != i {
                return Err(format!("expected the echo of {i}, got {echoed}").into());
            }
        }
        ports.send(END)?;
        wait_std(&mut child)?;
        drop(ports.node);
        Ok(Outcome::latencies(latencies))
    }

    /// The echoer: opens the services and sends back every value until [`END`].
    pub(super) fn child(role: &Role, wait: bool) -> Result<Outcome, BoxError> {
        if *role != Role::Echo {
            return Err("iceoryx2's round trips take part in rtt only".into());
        }
        set_log_level(LogLevel::Error);
        let prefix = std::env::var(ENV_PREFIX)?;
        let ports = Ports::new(&prefix, "pong", "ping", false, wait)?;
        let mut control = stdin_socket_child()?;
        control.write_all(&[READY])?;
        let mut connected = false;
        loop {
            let value = ports.receive()?;
            if value == END {
                return Ok(Outcome::default());
            }
            if !connected {
                // The pinger's subscriber is there by now: it was made before this child.
                ports.publisher.update_connections()?;
                connected = true;
            }
            ports.send(value)?;
        }
    }
}
