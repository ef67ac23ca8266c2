//! Terminals that live in the daemon: the `Terminal` service.

use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};
use yonder_proto::pb::{self, terminal_server::Terminal};

type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// A detached terminal ends after this long, like VS Code's reconnection
/// grace time: long enough to survive a lunch break or a train tunnel.
pub const DEFAULT_TERMINAL_GRACE: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

/// All terminals of the daemon.
#[derive(Debug, Default)]
pub struct Registry {
    grace: std::time::Duration,
}

impl Registry {
    pub fn new(grace: std::time::Duration) -> Self {
        Self { grace }
    }

    /// Terminals still running (they keep the daemon from idling out).
    pub fn live(&self) -> usize {
        0
    }
}

#[derive(Debug, Default, Clone)]
pub struct TerminalService {
    pub registry: Arc<Registry>,
}

#[tonic::async_trait]
impl Terminal for TerminalService {
    async fn open(
        &self,
        _req: Request<pb::OpenTerminalRequest>,
    ) -> Result<Response<pb::TerminalInfo>, Status> {
        Err(Status::unimplemented("terminals are not implemented yet"))
    }
    type AttachStream = RespStream<pb::TerminalOutput>;
    async fn attach(
        &self,
        _req: Request<Streaming<pb::TerminalInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        Err(Status::unimplemented("terminals are not implemented yet"))
    }
    async fn list(
        &self,
        _req: Request<pb::ListTerminalsRequest>,
    ) -> Result<Response<pb::TerminalList>, Status> {
        Err(Status::unimplemented("terminals are not implemented yet"))
    }
    async fn kill(
        &self,
        _req: Request<pb::KillTerminalRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        Err(Status::unimplemented("terminals are not implemented yet"))
    }
}
