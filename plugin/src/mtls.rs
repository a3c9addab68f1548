//! Automatic mutual TLS between OpenBao and the plugin, as go-plugin sets it up.
//!
//! OpenBao makes a throwaway certificate for each launch and hands it over in the environment;
//! the plugin makes one of its own and prints it in the handshake line. Each side then accepts
//! exactly the other's certificate: there is no CA, no name to check beyond `localhost`, nothing
//! a third process on the machine could present. So the verifiers here *pin* the peer's
//! certificate byte for byte instead of building a chain (go-plugin's certificates are marked as
//! CAs, which a WebPKI path check rightly refuses as an end entity) and then check the
//! handshake signature with the pinned certificate's key.
//!
//! Go signs with ECDSA P-521, which `ring` does not verify; [`EcdsaP521Sha512`] does, with
//! RustCrypto's `p521`.

use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
    SignatureVerificationAlgorithm, UnixTime, alg_id,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// gRPC rides on HTTP/2, which TLS peers agree on by ALPN; Go's gRPC refuses a TLS connection
/// that did not.
const ALPN_H2: &[u8] = b"h2";

/// The plugin's side of the mutual TLS of one launch: its own certificate and key, and
/// OpenBao's certificate, the only one it accepts.
pub struct Mtls {
    own_cert: CertificateDer<'static>,
    own_key: PrivatePkcs8KeyDer<'static>,
    peer: Arc<PinnedPeer>,
}

impl Mtls {
    /// Makes the plugin's certificate for this launch and pins OpenBao's, given as PEM.
    pub fn new(peer_cert_pem: &str) -> anyhow::Result<Mtls> {
        let peer_cert = CertificateDer::from_pem_slice(peer_cert_pem.as_bytes())
            .context("PLUGIN_CLIENT_CERT holds no PEM certificate")?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating the plugin's TLS key")?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .context("the plugin's certificate parameters")?;
        // Go's client checks the usage of the certificate it pinned, for both directions.
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.distinguished_name.push(rcgen::DnType::CommonName, "rotor OpenBao plugin");
        let cert = params.self_signed(&key).context("signing the plugin's certificate")?;
        Ok(Mtls {
            own_cert: cert.der().clone(),
            own_key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            peer: Arc::new(PinnedPeer { cert: peer_cert, provider: provider() }),
        })
    }

    /// The plugin's certificate (DER), for the handshake line.
    pub fn own_cert(&self) -> &[u8] {
        &self.own_cert
    }

    /// The configuration of the plugin's gRPC server: it asks for and pins OpenBao's
    /// certificate.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(self.peer.clone())
            .with_single_cert(vec![self.own_cert.clone()], PrivateKeyDer::Pkcs8(self.own_key.clone_key()))
            .context("the plugin's TLS server configuration")?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }

    /// The configuration for dialing the servers OpenBao offers through the broker (storage,
    /// system view): it presents the plugin's certificate and accepts only OpenBao's.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.peer.clone())
            .with_client_auth_cert(
                vec![self.own_cert.clone()],
                PrivateKeyDer::Pkcs8(self.own_key.clone_key()),
            )
            .context("the plugin's TLS client configuration")?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly one certificate, on either side of a connection.
#[derive(Debug)]
struct PinnedPeer {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl PinnedPeer {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.cert.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    /// The signature algorithms for a handshake signature: `ring`'s, or P-521 for that scheme.
    fn algorithms(&self, scheme: SignatureScheme) -> &WebPkiSupportedAlgorithms {
        if scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            &P521
        } else {
            &self.provider.signature_verification_algorithms
        }
    }

    fn verify12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check(cert)?;
        verify_tls12_signature(message, cert, dss, self.algorithms(dss.scheme))
    }

    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check(cert)?;
        verify_tls13_signature(message, cert, dss, self.algorithms(dss.scheme))
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self.provider.signature_verification_algorithms.supported_schemes();
        schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        schemes
    }
}

impl ClientCertVerifier for PinnedPeer {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hint: Go's client then sends its one certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ServerCertVerifier for PinnedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

static P521: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[&EcdsaP521Sha512],
    mapping: &[(SignatureScheme::ECDSA_NISTP521_SHA512, &[&EcdsaP521Sha512])],
};

/// ECDSA over P-521 with SHA-512, the signature Go's go-plugin certificates make.
#[derive(Debug)]
struct EcdsaP521Sha512;

impl SignatureVerificationAlgorithm for EcdsaP521Sha512 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use p521::ecdsa::signature::Verifier as _;
        let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let signature = p521::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &signature).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P521
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA512
    }
}

#[cfg(test)]
mod tests {
    use p521::ecdsa::signature::Signer as _;

    use super::*;

    #[test]
    fn p521_signatures_verify_and_altered_ones_do_not() {
        // A fixed scalar below the group order (P-521 scalars are 521 bits: the top byte is 0 or 1).
        let mut secret = [7u8; 66];
        secret[0] = 0;
        let key = p521::ecdsa::SigningKey::from_slice(&secret).unwrap();
        let signature: p521::ecdsa::Signature = key.sign(b"handshake transcript");
        let (public, der) = (key.verifying_key().to_sec1_point(false), signature.to_der());
        let verify = |message: &[u8], signature: &[u8]| {
            EcdsaP521Sha512.verify_signature(public.as_bytes(), message, signature)
        };
        assert!(verify(b"handshake transcript", der.as_bytes()).is_ok());
        assert!(verify(b"handshake transcripT", der.as_bytes()).is_err());
        assert!(verify(b"handshake transcript", &der.as_bytes()[..der.as_bytes().len() - 1]).is_err());
        let other = p521::ecdsa::SigningKey::from_slice(&[[0u8].as_slice(), &[9u8; 65]].concat()).unwrap();
        let forged: p521::ecdsa::Signature = other.sign(b"handshake transcript");
        assert!(verify(b"handshake transcript", forged.to_der().as_bytes()).is_err());
    }

    #[test]
    fn only_the_pinned_certificate_is_accepted_on_either_side() {
        let cert = |name: &str| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            rcgen::CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap()
                .der()
                .clone()
        };
        let (openbao, intruder) = (cert("localhost"), cert("localhost"));
        let peer = PinnedPeer { cert: openbao.clone(), provider: provider() };
        let now = UnixTime::now();
        assert!(ClientCertVerifier::verify_client_cert(&peer, &openbao, &[], now).is_ok());
        assert!(ClientCertVerifier::verify_client_cert(&peer, &intruder, &[], now).is_err());
        let name = ServerName::try_from("localhost").unwrap();
        assert!(peer.verify_server_cert(&openbao, &[], &name, &[], now).is_ok());
        assert!(peer.verify_server_cert(&intruder, &[], &name, &[], now).is_err());
        // Go's client signs with P-521: the scheme must be offered, or it finds none to use.
        assert!(
            ClientCertVerifier::supported_verify_schemes(&peer)
                .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
        );
    }
}
