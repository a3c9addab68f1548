//! The test vectors published in docs/FORMAT.md, checked byte for byte. They are read from the
//! document itself so that the document and the code cannot drift apart.

use rotor_codec::{CodecError, DataKey, EnvelopeNonces, Kek};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    kind: String,
    kek: String,
    #[serde(default)]
    old_kek: Option<String>,
    #[serde(default)]
    kek_version: u32,
    id: String,
    plaintext_hex: String,
    #[serde(default)]
    data_key: Option<String>,
    #[serde(default)]
    wrap_nonce: Option<String>,
    #[serde(default)]
    data_nonce: Option<String>,
    #[serde(default)]
    iv: Option<String>,
    #[serde(default)]
    input: Option<String>,
    ciphertext: String,
}

fn vectors() -> Vec<Vector> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md")).unwrap();
    let block =
        doc.split("```json").nth(1).expect("FORMAT.md has a ```json block").split("```").next().unwrap();
    serde_json::from_str(block).expect("the vectors parse")
}

fn bytes<const N: usize>(field: &Option<String>) -> [u8; N] {
    hex::decode(field.as_deref().expect("field present")).unwrap().try_into().unwrap()
}

#[test]
fn vectors_reproduce_byte_for_byte_and_open() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 4);
    for v in &vectors {
        let kek = Kek::from_hex(&v.kek).unwrap();
        let plaintext = hex::decode(&v.plaintext_hex).unwrap();
        let produced = match v.kind.as_str() {
            "envelope" => rotor_codec::seal_with(
                &kek,
                v.kek_version,
                &v.id,
                &plaintext,
                &DataKey::from_bytes(bytes(&v.data_key)),
                EnvelopeNonces { wrap: bytes(&v.wrap_nonce), data: bytes(&v.data_nonce) },
            ),
            "rewrap" => {
                let old = Kek::from_hex(v.old_kek.as_deref().unwrap()).unwrap();
                let input = v.input.as_deref().unwrap();
                assert_eq!(rotor_codec::open(&old, &v.id, input).unwrap().as_slice(), plaintext.as_slice());
                rotor_codec::rewrap_with(&old, &kek, v.kek_version, &v.id, input, bytes(&v.wrap_nonce))
                    .unwrap()
            }
            "legacy" => rotor_codec::seal_legacy_with(&kek, &plaintext, bytes(&v.iv)),
            other => panic!("unknown vector kind {other}"),
        };
        assert_eq!(produced, v.ciphertext, "{} vector for {}", v.kind, v.id);
        assert_eq!(rotor_codec::open(&kek, &v.id, &v.ciphertext).unwrap().as_slice(), plaintext.as_slice());
    }
}

#[test]
fn vectors_refuse_the_wrong_id_version_or_key() {
    let vectors = vectors();
    let first = &vectors[0];
    let kek = Kek::from_hex(&first.kek).unwrap();
    let other = Kek::from_hex(&vectors[2].kek).unwrap();
    let relabelled = first.ciphertext.replacen("rotor:v3:", "rotor:v4:", 1);
    assert_eq!(rotor_codec::open(&kek, "user-2@IBNMSP", &first.ciphertext), Err(CodecError::Authentication));
    assert_eq!(rotor_codec::open(&kek, &first.id, &relabelled), Err(CodecError::Authentication));
    assert_eq!(rotor_codec::open(&other, &first.id, &first.ciphertext), Err(CodecError::Authentication));
}
