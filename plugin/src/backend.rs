//! The `pb.Backend` service: OpenBao's calls into the mount. `Setup` connects to the mount's
//! storage through the broker; every request then goes to [`Mount`].

use std::sync::OnceLock;

use tonic::{Request as Call, Response as Answer, Status};

use crate::broker::Broker;
use crate::paths::Mount;
use crate::proto::backend::{
    self as pb, Empty, HandleExistenceCheckArgs, HandleExistenceCheckReply, HandleRequestArgs,
    HandleRequestReply, InitializeArgs, InitializeReply, InvalidateKeyArgs, Paths, SetupArgs, SetupReply,
    SpecialPathsReply, TypeReply,
};
use crate::request::{Failure, Request, reply};
use crate::storage::Storage;

/// OpenBao's backend type for a secrets engine (`logical.TypeLogical`).
const TYPE_SECRETS_ENGINE: u32 = 1;

/// The backend of one plugin process.
pub struct Backend {
    broker: Broker,
    mount: OnceLock<Mount>,
}

impl Backend {
    /// A backend that will reach storage through `broker`.
    pub fn new(broker: Broker) -> Backend {
        Backend { broker, mount: OnceLock::new() }
    }

    fn mount(&self) -> Result<&Mount, Failure> {
        self.mount
            .get()
            .ok_or_else(|| Failure::Internal(anyhow::anyhow!("the plugin was not set up by OpenBao")))
    }
}

fn request_of(request: Option<pb::Request>) -> Result<Request, Failure> {
    Request::from_proto(request.ok_or_else(|| Failure::BadRequest("OpenBao sent no request".to_owned()))?)
}

#[tonic::async_trait]
impl crate::proto::pb::backend_server::Backend for Backend {
    async fn setup(&self, call: Call<SetupArgs>) -> Result<Answer<SetupReply>, Status> {
        let args = call.into_inner();
        let err = match self.broker.dial(args.broker_id).await {
            Ok(channel) => {
                // OpenBao sets a backend up once per process; a second setup keeps the first.
                let _ = self.mount.set(Mount::new(Storage::new(channel)));
                tracing::info!(mount = %args.backend_uuid, "set up");
                String::new()
            }
            Err(error) => format!("{error:#}"),
        };
        Ok(Answer::new(SetupReply { err }))
    }

    async fn initialize(&self, _call: Call<InitializeArgs>) -> Result<Answer<InitializeReply>, Status> {
        Ok(Answer::new(InitializeReply { err: None }))
    }

    async fn backend_type(&self, _call: Call<Empty>) -> Result<Answer<TypeReply>, Status> {
        Ok(Answer::new(TypeReply { r#type: TYPE_SECRETS_ENGINE }))
    }

    async fn special_paths(&self, _call: Call<Empty>) -> Result<Answer<SpecialPathsReply>, Status> {
        // No path is reachable without a token, none needs sudo.
        Ok(Answer::new(SpecialPathsReply { paths: Some(Paths::default()) }))
    }

    async fn handle_request(
        &self,
        call: Call<HandleRequestArgs>,
    ) -> Result<Answer<HandleRequestReply>, Status> {
        let outcome = match (self.mount(), request_of(call.into_inner().request)) {
            (Ok(mount), Ok(request)) => mount.handle(request).await,
            (Err(failure), _) | (_, Err(failure)) => Err(failure),
        };
        Ok(Answer::new(reply(outcome)))
    }

    async fn handle_existence_check(
        &self,
        call: Call<HandleExistenceCheckArgs>,
    ) -> Result<Answer<HandleExistenceCheckReply>, Status> {
        let exists = match (self.mount(), request_of(call.into_inner().request)) {
            (Ok(mount), Ok(request)) => mount.exists(&request.path).await,
            (Err(failure), _) | (_, Err(failure)) => Err(failure),
        };
        let answer = match exists {
            Ok(Some(exists)) => HandleExistenceCheckReply { check_found: true, exists, err: None },
            Ok(None) => HandleExistenceCheckReply { check_found: false, exists: false, err: None },
            Err(failure) => {
                HandleExistenceCheckReply { check_found: false, exists: false, err: reply(Err(failure)).err }
            }
        };
        Ok(Answer::new(answer))
    }

    async fn cleanup(&self, _call: Call<Empty>) -> Result<Answer<Empty>, Status> {
        if let Some(mount) = self.mount.get() {
            mount.stop().await;
        }
        tracing::info!("cleaned up");
        Ok(Answer::new(Empty {}))
    }

    async fn invalidate_key(&self, _call: Call<InvalidateKeyArgs>) -> Result<Answer<Empty>, Status> {
        // Nothing is cached between requests: every request reads the ring from storage.
        Ok(Answer::new(Empty {}))
    }
}
