//! The go-plugin handshake: what OpenBao puts in a plugin's environment when it launches it, and
//! the one line the plugin answers on stdout once it listens.
//!
//! The plugin speaks version 5 of OpenBao's backend protocol, the one with automatic mutual TLS,
//! and nothing older: versions 3 and 4 run a *metadata mode* in plain text and fetch TLS
//! certificates through a wrapping token. Without mutual TLS it refuses to start: the connection
//! carries wallets and storage access, and nothing but OpenBao may talk to it.

use std::env;

use anyhow::bail;
use base64::Engine as _;

/// The cookie go-plugin's client sets so that a plugin binary run by hand says what it is
/// instead of waiting for a connection that never comes.
const MAGIC_COOKIE_KEY: &str = "VAULT_BACKEND_PLUGIN";
const MAGIC_COOKIE_VALUE: &str = "6669da05-b1c8-4f49-97d9-c8e5bed98e20";

/// go-plugin's own protocol, the first field of the handshake line.
const CORE_PROTOCOL_VERSION: u32 = 1;

/// OpenBao's backend protocol over gRPC with automatic mutual TLS. Version 5 also allows
/// multiplexing many mounts over one process, which this plugin does not offer (it leaves the
/// multiplexing service unimplemented): each mount gets a process of its own.
const APP_PROTOCOL_VERSION: u32 = 5;

/// What OpenBao asked for, read from the environment.
#[derive(Debug)]
pub struct Launch {
    /// The certificate OpenBao presents (PEM), the only one the plugin accepts.
    pub client_cert_pem: String,
}

impl Launch {
    /// Reads and checks the environment OpenBao launched the plugin with.
    pub fn from_env() -> anyhow::Result<Launch> {
        if env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
            bail!(
                "this is an OpenBao plugin: register it with `bao plugin register -sha256=… secret rotor` \
                 and mount it with `bao secrets enable -path=rotor rotor`; it is not meant to be run by hand"
            );
        }
        let versions = env::var("PLUGIN_PROTOCOL_VERSIONS").unwrap_or_default();
        if !versions.split(',').any(|v| v.trim() == APP_PROTOCOL_VERSION.to_string()) {
            bail!(
                "OpenBao offers plugin protocol versions [{versions}]; this plugin speaks version \
                 {APP_PROTOCOL_VERSION} (gRPC backends)"
            );
        }
        if flag("VAULT_PLUGIN_METADATA_MODE") || flag("BAO_PLUGIN_METADATA_MODE") {
            bail!(
                "OpenBao asked for metadata mode (plugin protocol 4); rotor's plugin speaks protocol 5 only"
            );
        }
        let client_cert_pem = env::var("PLUGIN_CLIENT_CERT").ok().filter(|pem| !pem.trim().is_empty());
        let Some(client_cert_pem) = client_cert_pem else {
            bail!(
                "OpenBao launched the plugin without automatic mutual TLS (PLUGIN_CLIENT_CERT is \
                 unset); rotor's plugin serves requests only over mutual TLS"
            );
        };
        Ok(Launch { client_cert_pem })
    }
}

fn flag(name: &str) -> bool {
    env::var(name).is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// The line go-plugin's client waits for on the plugin's stdout:
/// `core|app|network|address|grpc|certificate`: the plugin listens on a unix socket, and its
/// certificate goes as DER in base64 without padding (go-plugin's client decodes it so).
pub fn line(socket: &std::path::Path, server_cert_der: &[u8]) -> String {
    let cert = base64::engine::general_purpose::STANDARD_NO_PAD.encode(server_cert_der);
    format!("{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{}|grpc|{cert}\n", socket.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_protocols_the_address_and_the_certificate() {
        let socket = std::path::Path::new("/tmp/rotor-plugin.x/grpc.sock");
        // 0xfb 0xff: the standard alphabet with `+`/`/`, no `=` padding.
        assert_eq!(line(socket, &[0xfb, 0xff]), "1|5|unix|/tmp/rotor-plugin.x/grpc.sock|grpc|+/8\n");
    }
}
