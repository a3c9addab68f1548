//! The contract itself: rotor's components fit their worlds, and no function a `rotator` or
//! `auditor` component can import returns key bytes or a wallet's plaintext.

use std::collections::{BTreeMap, BTreeSet};

use rotor::component::{ComponentSource, Sandbox};
use rotor::limits::Limits;
use wit_parser::{Resolve, Type, TypeDefKind, WorldItem};

/// Where text or bytes can appear in a function's answer (errors aside), as `record.field`
/// paths, or `string` / `bytes` when the answer itself is text or bytes.
fn text_leaves(resolve: &Resolve, ty: &Type, at: &str, leaves: &mut BTreeSet<String>) {
    let Type::Id(id) = ty else {
        if matches!(ty, Type::String | Type::Char) {
            leaves.insert(format!("{at}string"));
        }
        return;
    };
    let def = &resolve.types[*id];
    match &def.kind {
        TypeDefKind::Record(record) => {
            let name = def.name.clone().unwrap_or_default();
            for field in &record.fields {
                text_leaves(resolve, &field.ty, &format!("{name}.{}: ", field.name), leaves);
            }
        }
        TypeDefKind::List(Type::U8) => {
            leaves.insert(format!("{at}bytes"));
        }
        TypeDefKind::List(inner) | TypeDefKind::Option(inner) | TypeDefKind::Type(inner) => {
            text_leaves(resolve, inner, at, leaves)
        }
        TypeDefKind::Tuple(tuple) => tuple.types.iter().for_each(|t| text_leaves(resolve, t, at, leaves)),
        // Only the answer: a failure's text is the host's own, bounded message.
        TypeDefKind::Result(result) => {
            if let Some(ok) = &result.ok {
                text_leaves(resolve, ok, at, leaves)
            }
        }
        TypeDefKind::Variant(variant) => {
            for case in variant.cases.iter().filter_map(|c| c.ty.as_ref()) {
                text_leaves(resolve, case, at, leaves)
            }
        }
        // Handles are opaque: a key held by the host, never its bytes.
        TypeDefKind::Handle(_) | TypeDefKind::Resource | TypeDefKind::Enum(_) | TypeDefKind::Flags(_) => {}
        other => panic!("a type this test does not walk yet: {other:?}"),
    }
}

/// For each function a world imports: where its answer can carry text or bytes.
fn imported_text(world: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit")).unwrap();
    let world = resolve.select_world(&[package], Some(world)).unwrap();
    let mut found = BTreeMap::new();
    for item in resolve.worlds[world].imports.values() {
        let WorldItem::Interface { id, .. } = item else { continue };
        let interface = &resolve.interfaces[*id];
        let name = interface.name.clone().unwrap_or_default();
        for function in interface.functions.values() {
            let mut leaves = BTreeSet::new();
            if let Some(result) = &function.result {
                text_leaves(&resolve, result, "", &mut leaves);
            }
            if !leaves.is_empty() {
                found.insert(format!("{name}.{}", function.name), leaves);
            }
        }
    }
    found
}

fn expect(entries: &[(String, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    entries.iter().map(|(f, leaves)| (f.clone(), leaves.iter().map(|l| l.to_string()).collect())).collect()
}

/// Every answer that carries text or bytes, reviewed: ids, ciphertexts, times, names and
/// counts, and the output of sealing under the host's keys with the host's nonces. A KEK, a
/// data key and a decrypted wallet only ever come back as handles. A new function that answers
/// with text or bytes fails this test until it is reviewed here.
const SEALED: &[&str] = &["sealed.nonce: bytes", "sealed.ciphertext: bytes", "sealed.tag: bytes"];
const KEY_METADATA: &[&str] = &[
    "key-metadata.created-time: string",
    "key-metadata.updated-time: string",
    "version-metadata.created-time: string",
    "version-metadata.deletion-time: string",
];
const ARCHIVE: &[&str] = &["archive-entry.name: string", "archive-entry.created-time: string"];
const WALLET: &[&str] = &["wallet.id: string", "wallet.ciphertext: string"];
const ROTATION: &[&str] = &[
    "rotation.started-at: string",
    "rotation.finished-at: string",
    "rotation.started-by: string",
    "rotation.component-sha256: string",
];

/// What both worlds' imports answer with text or bytes: the key handles' sealing, and the reads
/// of the key, wallet and journal interfaces named.
fn reads(keys: &str, wallets: &str, journal: &str) -> Vec<(String, &'static [&'static str])> {
    let function = |interface: &str, name: &str| format!("{interface}.{name}");
    vec![
        (function("key-types", "[method]data-key.seal"), SEALED),
        (function("key-types", "[method]kek.wrap"), SEALED),
        // A re-wrap answers as a wrap does: the host's nonce, the wrapped key and its tag.
        (function("key-types", "[method]kek.rewrap"), SEALED),
        (function("key-types", "[method]kek.seal"), SEALED),
        (function(keys, "metadata"), KEY_METADATA),
        (function(keys, "archive-entries"), ARCHIVE),
        (function(wallets, "version-counts"), &["string"][..]),
        (function(wallets, "scan"), WALLET),
        (function(wallets, "get"), &["string"][..]),
        (function(journal, "rotations"), ROTATION),
    ]
}

#[test]
fn no_function_a_rotator_imports_returns_key_bytes_or_plaintext() {
    let mut expected = reads("keys", "wallet-store", "journal");
    let conflicts = &["batch-outcome.conflicts: string"][..];
    expected.extend([
        ("wallet-store.next-batch".to_owned(), WALLET),
        ("wallet-store.replace-batch".to_owned(), conflicts),
        ("wallet-store.replace-current-batch".to_owned(), conflicts),
        ("wallet-store.submit-current-batch".to_owned(), conflicts),
        ("wallet-store.settle-batches".to_owned(), conflicts),
        ("journal.begin".to_owned(), ROTATION),
        ("journal.resume".to_owned(), ROTATION),
    ]);
    assert_eq!(imported_text("rotator"), expect(&expected));
}

#[test]
fn no_function_an_auditor_imports_returns_key_bytes_or_plaintext() {
    assert_eq!(imported_text("auditor"), expect(&reads("key-reader", "wallet-reader", "journal-reader")));
}

#[test]
fn the_built_in_component_fits_rotors_world_and_is_pinned_by_digest() {
    let source = ComponentSource::builtin();
    assert_eq!(source.sha256.len(), 64);
    assert_eq!(source.origin, "built-in");
    Sandbox::new(Limits::default(), None).unwrap().rotator(&source).unwrap();
}
