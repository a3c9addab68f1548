//! The plugin's half of go-plugin's broker: OpenBao announces, on one long-lived stream, the
//! extra gRPC servers it runs for this plugin (storage and the system view, under the id it
//! passes in `Setup`); the plugin dials them with the same mutual TLS as its own server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{DnsName, ServerName};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::proto::go_plugin::ConnInfo;

/// How long a dial waits for OpenBao to announce the server asked for; go-plugin's own wait.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(5);

/// The servers OpenBao has announced, by id, and the TLS to reach them with.
#[derive(Clone)]
pub struct Broker {
    announced: Arc<Mutex<HashMap<u32, ConnInfo>>>,
    arrived: Arc<Notify>,
    tls: TlsConnector,
}

impl Broker {
    /// A broker whose connections use `tls`.
    pub fn new(tls: rustls::ClientConfig) -> Broker {
        Broker { announced: Arc::default(), arrived: Arc::default(), tls: TlsConnector::from(Arc::new(tls)) }
    }

    /// Records a server OpenBao announced on the broker stream.
    pub fn announce(&self, info: ConnInfo) {
        tracing::debug!(id = info.service_id, network = %info.network, "broker: server announced");
        self.announced.lock().unwrap_or_else(|e| e.into_inner()).insert(info.service_id, info);
        self.arrived.notify_waiters();
    }

    /// Connects to the server OpenBao announced (or is about to announce) under `id`.
    pub async fn dial(&self, id: u32) -> anyhow::Result<Channel> {
        let info = tokio::time::timeout(ANNOUNCE_WAIT, self.announced(id)).await.with_context(|| {
            format!("OpenBao did not announce broker server {id} within {ANNOUNCE_WAIT:?}")
        })?;
        let target = match info.network.as_str() {
            "unix" => Target::Unix(PathBuf::from(&info.address)),
            "tcp" => Target::Tcp(info.address.clone()),
            other => bail!("broker server {id} is on network {other:?}; only unix and tcp are known"),
        };
        let tls = self.tls.clone();
        // The URI only satisfies tonic: the connector below decides where the bytes go.
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let (target, tls) = (target.clone(), tls.clone());
                async move { target.connect(tls).await.map(TokioIo::new) }
            }))
            .await
            .with_context(|| format!("connecting to OpenBao's broker server {id} at {}", info.address))?;
        Ok(channel)
    }

    async fn announced(&self, id: u32) -> ConnInfo {
        loop {
            // Registered before looking, so an announcement between the look and the wait wakes it.
            let arrived = self.arrived.notified();
            if let Some(info) = self.announced.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
                return info.clone();
            }
            arrived.await;
        }
    }
}

#[derive(Clone)]
enum Target {
    Unix(PathBuf),
    Tcp(String),
}

/// A byte stream to a broker server, under TLS.
type Stream = tokio_rustls::client::TlsStream<Box<dyn Io>>;
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

impl Target {
    async fn connect(self, tls: TlsConnector) -> std::io::Result<Stream> {
        let raw: Box<dyn Io> = match self {
            Target::Unix(path) => Box::new(UnixStream::connect(path).await?),
            Target::Tcp(address) => Box::new(TcpStream::connect(address).await?),
        };
        // go-plugin's certificates name `localhost`; the verifier pins the certificate anyway.
        tls.connect(ServerName::from(DnsName::try_from("localhost").expect("a DNS name")), raw).await
    }
}
