//! Text and file-name search: the `Search` service.

use std::pin::Pin;
use tonic::{Request, Response, Status};
use yonder_proto::pb::{self, search_server::Search};

type RespStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, Default, Clone)]
pub struct SearchService;

#[tonic::async_trait]
impl Search for SearchService {
    type GrepStream = RespStream<pb::SearchResults>;
    async fn grep(
        &self,
        _req: Request<pb::SearchRequest>,
    ) -> Result<Response<Self::GrepStream>, Status> {
        Err(Status::unimplemented("search is not implemented yet"))
    }
    type FindStream = RespStream<pb::FindResults>;
    async fn find(
        &self,
        _req: Request<pb::FindRequest>,
    ) -> Result<Response<Self::FindStream>, Status> {
        Err(Status::unimplemented("find is not implemented yet"))
    }
}
