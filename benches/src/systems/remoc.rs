//! remoc 0.20's remote trait calls, as its `rtc` module docs set them up: a
//! `#[rtc::remote]` trait whose methods take `&self`, its `…ServerShared` over an `Arc` of
//! the object in the child (calls dispatched concurrently, up to its default
//! parallelism), whose client the child hands over while connecting
//! (`Connect::io(Cfg::default(), reader, writer).provide(client)`) and the parent takes
//! (`.consume()`), then calls from every task through clones of it. The connection is a
//! Unix socketpair that the child gets as its stdin, split into its read and write halves;
//! remoc's default codec. Calls workloads only; built with the feature `rpc-peers`.

super::rpc_peer!(
    /// remoc.
    Remoc,
    "remoc"
);

#[cfg(feature = "rpc-peers")]
mod imp {
    use std::sync::Arc;

    use remoc::rtc::{CallError, ServerShared};
    use remoc::{ConnectExt, rtc};

    use super::super::{on_local_runtime, stdin_socket, stdin_socket_child, tokio_socket};
    use crate::BoxError;
    use crate::calls::{Caller, Plan, drive, square};
    use crate::process::{ChildCmd, wait_std};
    use crate::workload::Outcome;

    /// The remote trait: squares.
    #[rtc::remote]
    pub(super) trait SquareService {
        /// `n * n` (wrapping).
        async fn square(&self, n: u64) -> Result<u64, CallError>;
    }

    #[derive(Debug)]
    struct Squarer;

    impl SquareService for Squarer {
        async fn square(&self, n: u64) -> Result<u64, CallError> {
            Ok(square(n))
        }
    }

    impl Caller for SquareServiceClient {
        async fn call(&self, n: u64) -> Result<u64, BoxError> {
            Ok(SquareService::square(self, n).await?)
        }
    }

    pub(super) fn parent(child: ChildCmd, plan: &Plan) -> Result<Outcome, BoxError> {
        let (socket, mut child) = stdin_socket(child)?;
        let stats = on_local_runtime(async {
            let (reader, writer) = tokio_socket(socket)?.into_split();
            let client: SquareServiceClient =
                remoc::Connect::io(remoc::Cfg::default(), reader, writer)
                    .consume()
                    .await?;
            drive(plan, client).await
        })??;
        wait_std(&mut child)?;
        Ok(Outcome::calls(stats))
    }

    pub(super) fn child() -> Result<Outcome, BoxError> {
        let socket = stdin_socket_child()?;
        on_local_runtime(async {
            let (reader, writer) = tokio_socket(socket)?.into_split();
            let (server, client) =
                SquareServiceServerShared::<_, remoc::codec::Default>::new(Arc::new(Squarer));
            remoc::Connect::io(remoc::Cfg::default(), reader, writer)
                .provide(client)
                .await?;
            server.serve().await.map_err(|e| e.to_string())?;
            Ok(Outcome::default())
        })?
    }
}
