//! Wallets as the seed's Node service writes them, which the demo enrolls (and the bench and the
//! test kit too): Fabric X.509 identities (~1.3 KB of JSON) sealed in the legacy layout under
//! the KEK. rotor itself never writes this format; enrolling them natively keeps set-up fast.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rotor_codec::Kek;

/// A Fabric wallet identity with random key material, about 1.3 KB of JSON.
pub fn fabric_identity(name: &str) -> Vec<u8> {
    let pem = |label: &str, der_len: usize| {
        let mut der = vec![0u8; der_len];
        getrandom::fill(&mut der).expect("the OS random source works");
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    };
    serde_json::to_vec(&serde_json::json!({
        "credentials": {
            "certificate": pem("CERTIFICATE", 660),
            "privateKey": pem("PRIVATE KEY", 138),
        },
        "mspId": "IBNMSP",
        "type": "X.509",
        "version": 1,
        "label": name,
    }))
    .expect("JSON of strings serializes")
}

/// `base64(iv ‖ tag ‖ ciphertext)` under `kek`, as the seed's WalletService stores it.
pub fn legacy_wallet(kek: &Kek, plaintext: &[u8]) -> String {
    rotor_codec::seal_legacy(kek, plaintext).expect("the OS random source works")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_fabric_sized_and_distinct() {
        let a = fabric_identity("user-1");
        let b = fabric_identity("user-1");
        assert!((1200..1500).contains(&a.len()), "{} bytes", a.len());
        assert_ne!(a, b);
        let kek = Kek::from_bytes([1; 32]);
        let sealed = legacy_wallet(&kek, &a);
        assert_eq!(rotor_codec::open(&kek, "any-id", &sealed).unwrap().as_slice(), a.as_slice());
    }
}
