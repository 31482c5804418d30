//! `raw-tcp`, the baseline of the TCP workloads: `raw-buffered` over TCP on the loopback.
//! A blocking `std` TCP stream with `TCP_NODELAY`, the same hand-written frames, 64 KiB
//! `BufWriter` and `BufReader`, and the same roles (`raw::play_buffered`), no runtime.
//! The parent listens (see [`crate::net`]); the end of a stream is `shutdown(Write)`.

use std::net::{TcpListener, TcpStream};

use super::{System, raw};
use crate::BoxError;
use crate::net;
use crate::process::{ChildCmd, wait_std};
use crate::workload::{Outcome, Role, Workload};

/// Raw frames over TCP.
#[derive(Debug)]
pub(crate) struct RawTcp;

impl System for RawTcp {
    fn name(&self) -> &'static str {
        "raw-tcp"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_tcp()
    }

    fn parent(&self, mut child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        let listener = TcpListener::bind(net::LOOPBACK)?;
        net::pass_addr(&mut child, listener.local_addr()?);
        let mut child = child.spawn()?;
        let stream = net::accept_std(&listener, &mut child)?;
        stream.set_nodelay(true)?;
        let outcome = raw::play_buffered(stream, role)?;
        wait_std(&mut child)?;
        Ok(outcome)
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        let stream = TcpStream::connect(net::parent_addr()?)?;
        stream.set_nodelay(true)?;
        raw::play_buffered(stream, role)
    }
}
