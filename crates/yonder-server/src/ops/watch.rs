//! File watching: the `Watch` service.

use std::pin::Pin;
use tonic::{Request, Response, Status};
use yonder_proto::pb::{self, watch_server::Watch};

type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, Default, Clone)]
pub struct WatchService;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = RespStream<pb::WatchEvents>;
    async fn watch(
        &self,
        _req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch is not implemented yet"))
    }
}
