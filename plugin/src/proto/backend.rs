//! OpenBao's backend protocol (package `pb`, `sdk/plugin/pb/backend.proto`): the messages of the
//! `Backend` service the plugin serves and of the `Storage` service OpenBao serves back through
//! the broker. Written from the published `.proto`; only the fields rotor reads or writes are
//! declared, since protobuf decoding skips the rest (a request's auth, secret, headers,
//! connection), and a reply leaves them unset.

use std::collections::HashMap;

/// `pb.Empty`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Empty {}

/// An error as OpenBao's SDK carries it over gRPC; `err_type` picks the HTTP status.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoError {
    /// See [`ErrType`].
    #[prost(uint32, tag = "1")]
    pub err_type: u32,
    /// The message the client sees.
    #[prost(string, tag = "2")]
    pub err_msg: String,
    /// The HTTP status, for [`ErrType::Coded`].
    #[prost(int64, tag = "3")]
    pub err_code: i64,
}

/// The `err_type` values of [`ProtoError`] rotor uses (the SDK's `translation.go` numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrType {
    /// A plain error: HTTP 500.
    Plain = 0,
    /// HTTP 405.
    UnsupportedOperation = 5,
    /// HTTP 404.
    UnsupportedPath = 6,
    /// HTTP 400.
    InvalidRequest = 7,
}

/// The mount's special paths; rotor has none (every path needs a token allowed on it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Paths {
    /// Paths that need a root token (sudo).
    #[prost(string, repeated, tag = "1")]
    pub root: Vec<String>,
    /// Paths reachable without a token.
    #[prost(string, repeated, tag = "2")]
    pub unauthenticated: Vec<String>,
    /// Storage kept local to a cluster (not replicated).
    #[prost(string, repeated, tag = "3")]
    pub local_storage: Vec<String>,
    /// Storage sealed twice where the seal supports it.
    #[prost(string, repeated, tag = "4")]
    pub seal_wrap_storage: Vec<String>,
}

/// `pb.SpecialPathsReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpecialPathsReply {
    /// The paths.
    #[prost(message, optional, tag = "1")]
    pub paths: Option<Paths>,
}

/// One request to the mount, as OpenBao's router hands it over.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// OpenBao's request id, for logs.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `read`, `create`, `update`, `delete`, `list`, `rollback`, …
    #[prost(string, tag = "3")]
    pub operation: String,
    /// The path below the mount, e.g. `keys/import`.
    #[prost(string, tag = "4")]
    pub path: String,
    /// The request's data as JSON text: an object, or `null`.
    #[prost(string, tag = "5")]
    pub data: String,
    /// Where the mount is, e.g. `rotor/`.
    #[prost(string, tag = "12")]
    pub mount_point: String,
}

/// What a request came to; `data` is JSON text and must be valid JSON whenever a response is
/// sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// The reply's data as JSON text.
    #[prost(string, tag = "3")]
    pub data: String,
    /// Warnings OpenBao passes on to the client.
    #[prost(string, repeated, tag = "5")]
    pub warnings: Vec<String>,
}

/// `pb.HandleRequestArgs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandleRequestArgs {
    /// Unused by OpenBao (0).
    #[prost(uint32, tag = "1")]
    pub storage_id: u32,
    /// The request.
    #[prost(message, optional, tag = "2")]
    pub request: Option<Request>,
}

/// `pb.HandleRequestReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandleRequestReply {
    /// The response, if any (none: 204 for a write, 404 for a read).
    #[prost(message, optional, tag = "1")]
    pub response: Option<Response>,
    /// The error, if any.
    #[prost(message, optional, tag = "2")]
    pub err: Option<ProtoError>,
}

/// `pb.HandleExistenceCheckArgs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandleExistenceCheckArgs {
    /// Unused by OpenBao (0).
    #[prost(uint32, tag = "1")]
    pub storage_id: u32,
    /// The request.
    #[prost(message, optional, tag = "2")]
    pub request: Option<Request>,
}

/// `pb.HandleExistenceCheckReply`: whether a write creates or updates, for ACLs that tell them
/// apart.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandleExistenceCheckReply {
    /// The path has an existence check; without one, every write is an update.
    #[prost(bool, tag = "1")]
    pub check_found: bool,
    /// The item exists.
    #[prost(bool, tag = "2")]
    pub exists: bool,
    /// The error, if any.
    #[prost(message, optional, tag = "3")]
    pub err: Option<ProtoError>,
}

/// `pb.SetupArgs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetupArgs {
    /// The broker id under which OpenBao serves storage and the system view.
    #[prost(uint32, tag = "1")]
    pub broker_id: u32,
    /// The mount's configuration (empty when OpenBao only registers the plugin).
    #[prost(map = "string, string", tag = "2")]
    pub config: HashMap<String, String>,
    /// The mount's UUID (empty when OpenBao only registers the plugin).
    #[prost(string, tag = "3")]
    pub backend_uuid: String,
}

/// `pb.SetupReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetupReply {
    /// Why setup failed; empty if it did not.
    #[prost(string, tag = "1")]
    pub err: String,
}

/// `pb.InitializeArgs`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct InitializeArgs {}

/// `pb.InitializeReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InitializeReply {
    /// The error, if any.
    #[prost(message, optional, tag = "1")]
    pub err: Option<ProtoError>,
}

/// `pb.TypeReply`: 1 is a secrets engine.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct TypeReply {
    /// The backend type.
    #[prost(uint32, tag = "1")]
    pub r#type: u32,
}

/// `pb.InvalidateKeyArgs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InvalidateKeyArgs {
    /// The storage key another node changed.
    #[prost(string, tag = "1")]
    pub key: String,
}

/// One entry of the mount's storage (encrypted by OpenBao's barrier).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageEntry {
    /// The key, relative to the mount's storage.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    /// Seal-wrap the entry where the seal supports it.
    #[prost(bool, tag = "3")]
    pub seal_wrap: bool,
}

/// `pb.StorageGetArgs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageGetArgs {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
}

/// `pb.StorageGetReply`: no entry and no error when the key is absent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageGetReply {
    /// The entry, if any.
    #[prost(message, optional, tag = "1")]
    pub entry: Option<StorageEntry>,
    /// The error, if any.
    #[prost(string, tag = "2")]
    pub err: String,
}

/// `pb.StoragePutArgs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoragePutArgs {
    /// The entry.
    #[prost(message, optional, tag = "1")]
    pub entry: Option<StorageEntry>,
}

/// `pb.StoragePutReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoragePutReply {
    /// The error, if any.
    #[prost(string, tag = "1")]
    pub err: String,
}

/// `pb.StorageDeleteArgs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageDeleteArgs {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
}

/// `pb.StorageDeleteReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageDeleteReply {
    /// The error, if any.
    #[prost(string, tag = "1")]
    pub err: String,
}

/// `pb.StorageListArgs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageListArgs {
    /// The folder, ending in `/`.
    #[prost(string, tag = "1")]
    pub prefix: String,
}

/// `pb.StorageListReply`: the keys directly under the prefix, relative to it; sub-folders end
/// in `/`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageListReply {
    /// The keys.
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    /// The error, if any.
    #[prost(string, tag = "2")]
    pub err: String,
}
