//! The plugin's gRPC server: a unix socket in a private folder, mutual TLS on every connection,
//! and the services go-plugin and OpenBao call — the backend, the broker stream, the controller,
//! stdio and health.

use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::Connected;
use tonic::{Request as Call, Response as Answer, Status, Streaming};

use crate::backend::Backend;
use crate::broker::Broker;
use crate::handshake::{self, Launch};
use crate::mtls::Mtls;
use crate::proto::go_plugin::{ConnInfo, Empty, StdioData};
use crate::proto::pb::backend_server::BackendServer;
// tonic-build spells the Rust names after the services' proto names (GRPCBroker, …).
use crate::proto::plugin::g_r_p_c_broker_server::{GRPCBroker, GRPCBrokerServer};
use crate::proto::plugin::g_r_p_c_controller_server::{GRPCController, GRPCControllerServer};
use crate::proto::plugin::g_r_p_c_stdio_server::{GRPCStdio, GRPCStdioServer};

/// How long in-flight calls get to finish once OpenBao asks the plugin to stop; OpenBao kills
/// the process 2 s after asking.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Serves OpenBao until it asks the plugin to stop, or until OpenBao itself is gone.
pub async fn serve(launch: Launch) -> anyhow::Result<()> {
    let mtls = Mtls::new(&launch.client_cert_pem)?;
    let folder = PrivateFolder::new()?;
    let socket = folder.path().join("grpc.sock");
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("listening on {}", socket.display()))?;
    let (stop, stopped) = watch::channel(false);
    let connections = accept(listener, TlsAcceptor::from(Arc::new(mtls.server_config()?)));
    let broker = Broker::new(mtls.client_config()?);

    let (health, health_service) = tonic_health::server::health_reporter();
    // go-plugin's clients ask after the service named "plugin".
    health.set_service_status("plugin", tonic_health::ServingStatus::Serving).await;

    // The handshake goes out once the socket listens; everything else the plugin says goes to
    // stderr, which OpenBao logs.
    let mut stdout = tokio::io::stdout();
    stdout.write_all(handshake::line(&socket, mtls.own_cert()).as_bytes()).await?;
    stdout.flush().await?;

    let server = Server::builder()
        // A component uploaded to rotor/components/NAME arrives as one request.
        .add_service(
            BackendServer::new(Backend::new(broker.clone()))
                .max_decoding_message_size(crate::components::MAX_REQUEST_BYTES),
        )
        .add_service(GRPCBrokerServer::new(BrokerStream { broker, stopped: stopped.clone() }))
        .add_service(GRPCControllerServer::new(Controller { stop: stop.clone() }))
        .add_service(GRPCStdioServer::new(Stdio { stopped: stopped.clone() }))
        .add_service(health_service)
        .serve_with_incoming_shutdown(ReceiverStream::new(connections), until(stopped.clone()));
    tokio::spawn(stop_when_orphaned(stop));
    tokio::select! {
        served = server => served.context("serving OpenBao")?,
        () = async { until(stopped).await; tokio::time::sleep(STOP_GRACE).await } => {}
    }
    tracing::info!("stopped");
    Ok(())
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|&stopped| stopped).await;
}

/// A plugin outliving OpenBao (killed, say) would hold its socket and memory for nothing, and
/// go on moving wallets that no one can follow: it looks every 200 ms (a system call), so a
/// rotation stops within a few batches of OpenBao's death.
async fn stop_when_orphaned(stop: watch::Sender<bool>) {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if std::os::unix::process::parent_id() != parent {
            // Stop first: the log line after it goes to a pipe whose reader died with OpenBao.
            let _ = stop.send(true);
            tracing::warn!("OpenBao is gone; stopping");
            return;
        }
    }
}

/// Accepts connections and completes their TLS handshakes apart, so that one slow or refused
/// peer does not hold up the next.
fn accept(listener: UnixListener, acceptor: TlsAcceptor) -> mpsc::Receiver<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: passing, so wait and go on rather than stop.
                    tracing::warn!("accepting a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let _ = tx.send(Ok(Conn(tls))).await;
                    }
                    Err(error) => tracing::warn!("refused a connection: {error}"),
                }
            });
        }
    });
    rx
}

/// One mutually authenticated connection from OpenBao.
struct Conn(TlsStream<UnixStream>);

impl Connected for Conn {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A stream that sends nothing and ends when the plugin stops: what OpenBao must see on the
/// broker and stdio streams, which it expects to stay open for the life of the connection.
fn open_until<T: Send + 'static>(stopped: watch::Receiver<bool>) -> ReceiverStream<Result<T, Status>> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        until(stopped).await;
        drop(tx);
    });
    ReceiverStream::new(rx)
}

/// go-plugin's broker stream: OpenBao announces its servers on it.
struct BrokerStream {
    broker: Broker,
    stopped: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl GRPCBroker for BrokerStream {
    type StartStreamStream = ReceiverStream<Result<ConnInfo, Status>>;

    async fn start_stream(
        &self,
        call: Call<Streaming<ConnInfo>>,
    ) -> Result<Answer<Self::StartStreamStream>, Status> {
        let mut announcements = call.into_inner();
        let broker = self.broker.clone();
        tokio::spawn(async move {
            while let Ok(Some(info)) = announcements.message().await {
                broker.announce(info);
            }
        });
        Ok(Answer::new(open_until(self.stopped.clone())))
    }
}

/// go-plugin's controller: OpenBao asks the plugin to stop through it.
struct Controller {
    stop: watch::Sender<bool>,
}

#[tonic::async_trait]
impl GRPCController for Controller {
    async fn shutdown(&self, _call: Call<Empty>) -> Result<Answer<Empty>, Status> {
        tracing::info!("OpenBao asked the plugin to stop");
        let _ = self.stop.send(true);
        Ok(Answer::new(Empty {}))
    }
}

/// go-plugin's stdio stream. The plugin writes nothing but the handshake to stdout and logs to
/// stderr, which OpenBao reads directly, so the stream carries nothing.
struct Stdio {
    stopped: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl GRPCStdio for Stdio {
    type StreamStdioStream = ReceiverStream<Result<StdioData, Status>>;

    async fn stream_stdio(&self, _call: Call<Empty>) -> Result<Answer<Self::StreamStdioStream>, Status> {
        Ok(Answer::new(open_until(self.stopped.clone())))
    }
}

/// A folder only this user can enter, for the socket; removed when dropped.
struct PrivateFolder(PathBuf);

impl PrivateFolder {
    fn new() -> anyhow::Result<PrivateFolder> {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("the random source failed: {e}"))?;
        let path = std::env::temp_dir().join(format!("rotor-plugin-{}", hex::encode(suffix)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(PrivateFolder(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
