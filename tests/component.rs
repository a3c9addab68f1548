//! The built-in component's pure `codec` export against the published test vectors, and the
//! component's own refusals.

use rotor::capabilities::RunState;
use rotor::component::{ComponentSource, Instance, Sandbox};
use rotor::grants::{Access, Grants};
use rotor::limits::Limits;
use rotor::progress::Reporter;
use rotor::store::RunIdentity;
use rotor::vault::{VaultClient, VaultConfig};
use rotor_testkit::{Kind, TestDb};
use serde_json::Value;

/// An instance whose imports are never called: the codec export needs none.
async fn instance(db: &TestDb) -> Instance {
    let source = ComponentSource::builtin();
    let runtime = Sandbox::new(Limits::default(), None).unwrap().rotator(&source).unwrap();
    let vault = VaultClient::new(VaultConfig::with_token("http://127.0.0.1:9", "unused")).unwrap();
    let identity = RunIdentity::this_process(source.sha256.clone());
    let state = RunState::new(
        vault,
        db.connect().await,
        Grants::for_key("k", Access::ReadOnly),
        identity,
        Reporter::silent(),
        Limits::default(),
        rotor::plan::DEFAULT_LEASE,
    );
    runtime.instantiate(state).await.unwrap()
}

fn vectors() -> Vec<Value> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md")).unwrap();
    let block = doc.split("```json").nth(1).unwrap().split("```").next().unwrap();
    serde_json::from_str(block).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn component_codec_opens_the_published_vectors() {
    let db = TestDb::new(Kind::Sqlite).await;
    let mut instance = instance(&db).await;
    for v in vectors() {
        let version = v["kek_version"].as_u64().unwrap_or(0) as u32;
        let keks = vec![(version.max(1), v["kek"].as_str().unwrap().to_owned())];
        let id = v["id"].as_str().unwrap();
        let opened =
            instance.codec_open(&keks, id, v["ciphertext"].as_str().unwrap()).await.unwrap().unwrap();
        assert_eq!(hex::encode(opened), v["plaintext_hex"].as_str().unwrap(), "{v}");
        // Through the component, the wrong id never opens an envelope.
        if v["kind"] != "legacy" {
            let wrong =
                instance.codec_open(&keks, "someone-else", v["ciphertext"].as_str().unwrap()).await.unwrap();
            assert!(wrong.unwrap_err().contains("does not open"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn component_codec_seals_what_native_code_opens() {
    let db = TestDb::new(Kind::Sqlite).await;
    let mut instance = instance(&db).await;
    let kek = rotor_codec::Kek::generate().unwrap();
    let sealed = instance.codec_seal(&kek.to_hex(), 7, "w-1", b"wallet bytes").await.unwrap().unwrap();
    assert!(sealed.starts_with("rotor:v7:"));
    assert_eq!(rotor_codec::open(&kek, "w-1", &sealed).unwrap().as_slice(), b"wallet bytes");

    let refused = instance.codec_seal("not hex", 1, "w", b"x").await.unwrap().unwrap_err();
    assert!(refused.contains("64 hex characters"), "{refused}");
    let missing =
        instance.codec_open(&[(1, kek.to_hex().to_string())], "w-1", &sealed).await.unwrap().unwrap_err();
    assert!(missing.contains("no KEK version 7"), "{missing}");
}

#[test]
fn the_built_in_component_fits_rotors_world_and_is_pinned_by_digest() {
    let source = ComponentSource::builtin();
    assert_eq!(source.sha256.len(), 64);
    assert_eq!(source.origin, "built-in");
    Sandbox::new(Limits::default(), None).unwrap().rotator(&source).unwrap();
}
