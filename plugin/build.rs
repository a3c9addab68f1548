//! Generates the gRPC service code (tonic) for the services the plugin serves and calls. The
//! messages are written by hand in `src/proto/`; services are described here in Rust, so the
//! build needs no `protoc` and no `.proto` files.

use tonic_build::manual::{Builder, Method, Service};

const CODEC: &str = "tonic_prost::ProstCodec";

fn method(name: &str, route: &str, input: &str, output: &str) -> tonic_build::manual::MethodBuilder {
    Method::builder().name(name).route_name(route).input_type(input).output_type(output).codec_path(CODEC)
}

fn main() {
    let backend = "crate::proto::backend";
    let go_plugin = "crate::proto::go_plugin";
    let pb_backend = Service::builder()
        .name("Backend")
        .package("pb")
        .method(
            method(
                "handle_request",
                "HandleRequest",
                &format!("{backend}::HandleRequestArgs"),
                &format!("{backend}::HandleRequestReply"),
            )
            .build(),
        )
        .method(
            method(
                "special_paths",
                "SpecialPaths",
                &format!("{backend}::Empty"),
                &format!("{backend}::SpecialPathsReply"),
            )
            .build(),
        )
        .method(
            method(
                "handle_existence_check",
                "HandleExistenceCheck",
                &format!("{backend}::HandleExistenceCheckArgs"),
                &format!("{backend}::HandleExistenceCheckReply"),
            )
            .build(),
        )
        .method(
            method("cleanup", "Cleanup", &format!("{backend}::Empty"), &format!("{backend}::Empty")).build(),
        )
        .method(
            method(
                "invalidate_key",
                "InvalidateKey",
                &format!("{backend}::InvalidateKeyArgs"),
                &format!("{backend}::Empty"),
            )
            .build(),
        )
        .method(
            method("setup", "Setup", &format!("{backend}::SetupArgs"), &format!("{backend}::SetupReply"))
                .build(),
        )
        .method(
            method(
                "initialize",
                "Initialize",
                &format!("{backend}::InitializeArgs"),
                &format!("{backend}::InitializeReply"),
            )
            .build(),
        )
        .method(
            method("backend_type", "Type", &format!("{backend}::Empty"), &format!("{backend}::TypeReply"))
                .build(),
        )
        .build();
    let pb_storage = Service::builder()
        .name("Storage")
        .package("pb")
        .method(
            method(
                "list",
                "List",
                &format!("{backend}::StorageListArgs"),
                &format!("{backend}::StorageListReply"),
            )
            .build(),
        )
        .method(
            method(
                "get",
                "Get",
                &format!("{backend}::StorageGetArgs"),
                &format!("{backend}::StorageGetReply"),
            )
            .build(),
        )
        .method(
            method(
                "put",
                "Put",
                &format!("{backend}::StoragePutArgs"),
                &format!("{backend}::StoragePutReply"),
            )
            .build(),
        )
        .method(
            method(
                "delete",
                "Delete",
                &format!("{backend}::StorageDeleteArgs"),
                &format!("{backend}::StorageDeleteReply"),
            )
            .build(),
        )
        .build();
    let broker = Service::builder()
        .name("GRPCBroker")
        .package("plugin")
        .method(
            method(
                "start_stream",
                "StartStream",
                &format!("{go_plugin}::ConnInfo"),
                &format!("{go_plugin}::ConnInfo"),
            )
            .client_streaming()
            .server_streaming()
            .build(),
        )
        .build();
    let controller = Service::builder()
        .name("GRPCController")
        .package("plugin")
        .method(
            method("shutdown", "Shutdown", &format!("{go_plugin}::Empty"), &format!("{go_plugin}::Empty"))
                .build(),
        )
        .build();
    let stdio = Service::builder()
        .name("GRPCStdio")
        .package("plugin")
        // google.protobuf.Empty has the same (empty) wire form as go-plugin's own Empty.
        .method(
            method(
                "stream_stdio",
                "StreamStdio",
                &format!("{go_plugin}::Empty"),
                &format!("{go_plugin}::StdioData"),
            )
            .server_streaming()
            .build(),
        )
        .build();
    Builder::new().build_client(false).compile(&[pb_backend, broker, controller, stdio]);
    Builder::new().build_server(false).compile(&[pb_storage]);
}
