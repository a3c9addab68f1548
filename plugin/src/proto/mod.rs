//! The protobuf messages (written by hand from the published `.proto` files) and the gRPC
//! service code `build.rs` generates for them.

pub mod backend;
pub mod go_plugin;

/// `pb.Backend` (served) and `pb.Storage` (called, through the broker).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/pb.Backend.rs"));
    include!(concat!(env!("OUT_DIR"), "/pb.Storage.rs"));
}

/// go-plugin's broker, controller and stdio services (served).
#[allow(missing_docs, clippy::all)]
pub mod plugin {
    include!(concat!(env!("OUT_DIR"), "/plugin.GRPCBroker.rs"));
    include!(concat!(env!("OUT_DIR"), "/plugin.GRPCController.rs"));
    include!(concat!(env!("OUT_DIR"), "/plugin.GRPCStdio.rs"));
}
