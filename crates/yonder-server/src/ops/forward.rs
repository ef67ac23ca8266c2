//! Port forwarding and listening-port discovery: the `Forward` service.

use std::pin::Pin;
use tonic::{Request, Response, Status, Streaming};
use yonder_proto::pb::{self, forward_server::Forward};

type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, Default, Clone)]
pub struct ForwardService;

#[tonic::async_trait]
impl Forward for ForwardService {
    type DialStream = RespStream<pb::TunnelMessage>;
    async fn dial(
        &self,
        _req: Request<Streaming<pb::TunnelMessage>>,
    ) -> Result<Response<Self::DialStream>, Status> {
        Err(Status::unimplemented("forwarding is not implemented yet"))
    }
    type ListenStream = RespStream<pb::ListenEvent>;
    async fn listen(
        &self,
        _req: Request<pb::ListenRequest>,
    ) -> Result<Response<Self::ListenStream>, Status> {
        Err(Status::unimplemented("forwarding is not implemented yet"))
    }
    type AcceptStream = RespStream<pb::TunnelMessage>;
    async fn accept(
        &self,
        _req: Request<Streaming<pb::TunnelMessage>>,
    ) -> Result<Response<Self::AcceptStream>, Status> {
        Err(Status::unimplemented("forwarding is not implemented yet"))
    }
    type WatchPortsStream = RespStream<pb::PortEvent>;
    async fn watch_ports(
        &self,
        _req: Request<pb::WatchPortsRequest>,
    ) -> Result<Response<Self::WatchPortsStream>, Status> {
        Err(Status::unimplemented(
            "port discovery is not implemented yet",
        ))
    }
}
