//! go-plugin's own services (package `plugin`): the broker through which each side offers the
//! other more gRPC servers, the controller that asks the plugin to stop, and the stdio stream.
//! Written from go-plugin's published `.proto` files; field numbers are the wire format.

/// A server one side offers the other through the broker, or a request for one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnInfo {
    /// The id both sides agreed on (OpenBao sends it in `SetupArgs.broker_id`).
    #[prost(uint32, tag = "1")]
    pub service_id: u32,
    /// `unix` or `tcp`.
    #[prost(string, tag = "2")]
    pub network: String,
    /// A socket path or `host:port`.
    #[prost(string, tag = "3")]
    pub address: String,
    /// Only used when both sides multiplex the broker over the plugin's connection, which
    /// this plugin does not offer.
    #[prost(message, optional, tag = "4")]
    pub knock: Option<Knock>,
}

/// The multiplexing handshake of [`ConnInfo`]; kept so that decoding never drops it silently.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Knock {
    /// Asks the other side to expect a connection.
    #[prost(bool, tag = "1")]
    pub knock: bool,
    /// The other side is ready.
    #[prost(bool, tag = "2")]
    pub ack: bool,
    /// Why it is not.
    #[prost(string, tag = "3")]
    pub error: String,
}

/// go-plugin's empty message (the controller's).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Empty {}

/// A chunk of the plugin's stdout or stderr, for the stdio stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StdioData {
    /// 1 stdout, 2 stderr.
    #[prost(int32, tag = "1")]
    pub channel: i32,
    /// The bytes written.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}
