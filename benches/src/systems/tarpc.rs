//! tarpc 0.38, as its crate docs set a service up: a `#[tarpc::service]` trait, a server
//! `BaseChannel::with_defaults(transport).execute(server.serve())` spawning a task per
//! request (`for_each(|response| tokio::spawn(response))`), and the generated client
//! `SquareServiceClient::new(client::Config::default(), transport).spawn()` called with
//! `context::current()`. The transport is tarpc's serde transport with its fastest format,
//! `tokio_serde`'s bincode (length-delimited frames), over a Unix socketpair that the child
//! gets as its stdin. Calls workloads only; built with the feature `rpc-peers`.

super::rpc_peer!(
    /// tarpc.
    Tarpc,
    "tarpc"
);

#[cfg(feature = "rpc-peers")]
mod imp {

    use futures_util::StreamExt;
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::tokio_serde::formats::Bincode;
    use tarpc::{client, context, serde_transport};

    use super::super::{on_local_runtime, stdin_socket, stdin_socket_child, tokio_socket};
    use crate::BoxError;
    use crate::calls::{Caller, Plan, drive, square};
    use crate::process::{ChildCmd, wait_std};
    use crate::workload::Outcome;

    /// The service: squares.
    #[tarpc::service]
    pub(super) trait SquareService {
        /// `n * n` (wrapping).
        async fn square(n: u64) -> u64;
    }

    #[derive(Debug, Clone, Copy)]
    struct Squarer;

    impl SquareService for Squarer {
        async fn square(self, _: context::Context, n: u64) -> u64 {
            square(n)
        }
    }

    impl Caller for SquareServiceClient {
        async fn call(&self, n: u64) -> Result<u64, BoxError> {
            Ok(self.square(context::current(), n).await?)
        }
    }

    pub(super) fn parent(child: ChildCmd, plan: &Plan) -> Result<Outcome, BoxError> {
        let (socket, mut child) = stdin_socket(child)?;
        let stats = on_local_runtime(async {
            let transport =
                serde_transport::Transport::from((tokio_socket(socket)?, Bincode::default()));
            let client = SquareServiceClient::new(client::Config::default(), transport).spawn();
            drive(plan, client).await
        })??;
        wait_std(&mut child)?;
        Ok(Outcome::calls(stats))
    }

    pub(super) fn child() -> Result<Outcome, BoxError> {
        let socket = stdin_socket_child()?;
        on_local_runtime(async {
            let transport =
                serde_transport::Transport::from((tokio_socket(socket)?, Bincode::default()));
            BaseChannel::with_defaults(transport)
                .execute(Squarer.serve())
                .for_each(|response| async move {
                    tokio::spawn(response);
                })
                .await;
            Ok(Outcome::default())
        })?
    }
}
