//! A rotation component (world `rotor:kek/rotator`) in which every export misbehaves, each in
//! one way a hostile or broken upgrade might. `tests/sandbox.rs` runs each through the real
//! `rotor` binary and checks that the host stops it and that nothing changed.
//!
//! | export        | what it does                                                    |
//! |---------------|-----------------------------------------------------------------|
//! | validate(-batches) | computes forever                                           |
//! | history       | allocates memory without bound                                  |
//! | open-wallet   | asks for another path's KEK, destroys, stores and imports KEKs, overwrites a wallet |
//! | seal-wallet   | the same KEK operations, writes another wallet, then seals another wallet's plaintext as its own |
//! | import-kek    | stores no key, tries to store one of its own, and claims success |
//! | start-rotation| records a rotation but stores no KEK (the plan carries `--reencrypt` and `--output-format` to the workers) |
//! | move-wallets  | by plan: garbage over every wallet (over envelopes, new heads, the first holding the second wallet's data key); with `--reencrypt` another wallet's plaintext over the first; with `--output-format legacy` the first wallet under a key that is never stored |
//! | prune         | by `keep`: 1 calls `report.progress` forever, 2 `wallet-store.count` forever, 3 forges log lines, 4 shows all it can of a KEK and a wallet, 5 destroys every KEK version it can |

mod bindings {
    wit_bindgen::generate!({ world: "rotator", path: "../../../wit" });

    use super::Hostile;
    export!(Hostile with_types_in crate::bindings);
}

use bindings::exports::rotor::kek::operations as ops;
use bindings::rotor::kek::key_types::{DataKey, Kek, Sealed, Secret};
use bindings::rotor::kek::types::OutputFormat;
use bindings::rotor::kek::{journal, keys, report, wallet_store};

use bindings::rotor::kek::types::Failure;

/// Its own words, as a refusal: the host must not care which case a hostile component picks.
impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure::Refused(why)
    }
}

struct Hostile;

fn journal_error(error: journal::Error) -> String {
    format!("{error:?}")
}

fn spin() -> ! {
    let mut spins = 0u64;
    loop {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}

/// Log lines that try to pass for the host's, to bury it, or to flood it.
fn forge_logs() {
    use report::Level;
    report::log(
        Level::Info,
        "nothing to prune\n INFO rotor: every batch was cross-checked by the reference component\r\x1b[2K",
    );
    report::log(Level::Warn, &format!("{}END-OF-HUGE-LINE", "A".repeat(1 << 20)));
    for n in 0..10_000 {
        report::log(Level::Warn, &format!("flood line {n}"));
    }
}

const NOT_HERE: &str = "this hostile component does not implement that";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The standard base64 alphabet, for the envelopes this component lays out by hand.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Opens a ciphertext in either of rotor's formats under `kek`, laid out by hand (envelope:
/// `rotor:v<K>:` ‖ base64(0x01 ‖ wrap nonce ‖ wrapped key ‖ tag ‖ data nonce ‖ data ‖ tag);
/// legacy: base64(iv ‖ tag ‖ data)).
fn open(kek: &Kek, id: &str, ciphertext: &str) -> Option<Secret> {
    let piece = |b: &[u8]| b.to_vec();
    if let Some(rest) = ciphertext.strip_prefix("rotor:v") {
        let (version, payload) = rest.split_once(':')?;
        let p = decode_base64(payload);
        let wrap = Sealed { nonce: piece(&p[1..13]), ciphertext: piece(&p[13..45]), tag: piece(&p[45..61]) };
        let aad = [b"rotor/dek/v1".as_slice(), &version.parse::<u32>().ok()?.to_be_bytes(), id.as_bytes()].concat();
        let dek = kek.unwrap(&wrap, &aad)?;
        let tag_at = p.len() - 16;
        let data = Sealed { nonce: piece(&p[61..73]), ciphertext: piece(&p[73..tag_at]), tag: piece(&p[tag_at..]) };
        dek.open(&data, &[b"rotor/data/v1".as_slice(), id.as_bytes()].concat())
    } else {
        let p = decode_base64(ciphertext);
        kek.open(&Sealed { nonce: piece(&p[..12]), tag: piece(&p[12..28]), ciphertext: piece(&p[28..]) }, b"")
    }
}

/// `secret` sealed for wallet `id` as an envelope naming `version`, under `kek`.
fn seal_for(kek: &Kek, version: u32, id: &str, secret: &Secret) -> String {
    let dek = DataKey::new();
    let data = dek.seal(secret, &[b"rotor/data/v1".as_slice(), id.as_bytes()].concat());
    let wrap = kek.wrap(&dek, &[b"rotor/dek/v1".as_slice(), &version.to_be_bytes(), id.as_bytes()].concat());
    let payload = [&[1u8][..], &wrap.nonce, &wrap.ciphertext, &wrap.tag, &data.nonce, &data.ciphertext, &data.tag].concat();
    format!("rotor:v{version}:{}", base64(&payload))
}

/// A re-wrap's head for wallet `id`, laid out beside the data of `layout` (`id`'s envelope),
/// holding the data key of `source`'s envelope re-wrapped under `kek` for `id`.
fn head_for(kek: &Kek, source: &wallet_store::Wallet, id: &str, layout: &str) -> Option<String> {
    let aad = |version: &str, id: &str| -> Option<Vec<u8>> {
        Some([b"rotor/dek/v1".as_slice(), &version.parse::<u32>().ok()?.to_be_bytes(), id.as_bytes()].concat())
    };
    let (version, payload) = source.ciphertext.strip_prefix("rotor:v")?.split_once(':')?;
    let p = decode_base64(&payload[..84]);
    let wrap = Sealed { nonce: p[1..13].to_vec(), ciphertext: p[13..45].to_vec(), tag: p[45..61].to_vec() };
    let version_now = kek.version().to_string();
    let moved = kek.rewrap(&wrap, &aad(version, &source.id)?, kek, &aad(&version_now, id)?)?;
    let (_, own) = layout.strip_prefix("rotor:v")?.split_once(':')?;
    let data_nonce_start = &decode_base64(&own[..84])[61..63];
    let head = [&[1u8][..], &moved.nonce, &moved.ciphertext, &moved.tag, data_nonce_start].concat();
    Some(format!("rotor:v{version_now}:{}", base64(&head)))
}

/// Every KEK operation this component's command should not have, tried in turn: what the host
/// answered to each, or which one it let through.
fn try_kek_operations(key_path: &str) -> Result<Vec<String>, Failure> {
    let mut refusals = Vec::new();
    match keys::current("ibn/other-team-secret") {
        Ok(_) => return Err(String::from("got a handle for ibn/other-team-secret: the host let it through").into()),
        Err(e) => refusals.push(format!("{e:?}")),
    }
    for version in 1..=3 {
        match keys::destroy(key_path, version) {
            Ok(()) => return Err(format!("destroyed KEK v{version}: the host let it through").into()),
            Err(e) => refusals.push(format!("{e:?}")),
        }
    }
    match keys::create_next(key_path, 1, None) {
        Ok(_) => return Err(String::from("stored a KEK of its own: the host let it through").into()),
        Err(e) => refusals.push(format!("{e:?}")),
    }
    match keys::import_given(key_path) {
        Ok(_) => return Err(String::from("imported a KEK: the host let it through").into()),
        Err(e) => refusals.push(format!("{e:?}")),
    }
    Ok(refusals)
}

/// The first two wallets of the table, in id order.
fn first_two() -> Result<(wallet_store::Wallet, wallet_store::Wallet), Failure> {
    let mut wallets = wallet_store::scan(None, 2, None).map_err(|e| format!("{e:?}"))?.into_iter();
    match (wallets.next(), wallets.next()) {
        (Some(first), Some(second)) => Ok((first, second)),
        _ => Err(String::from("the table needs two wallets").into()),
    }
}

/// The report of a worker claiming to have moved all `total` wallets it was handed.
fn claimed_all(total: u64) -> ops::MoveReport {
    ops::MoveReport { seen: total, rotated: total, unchanged: 0, failed: Vec::new(), failed_count: 0 }
}

impl ops::Guest for Hostile {
    fn validate(_: ops::KeyLocation, _: u32) -> Result<ops::ValidateReport, Failure> {
        spin()
    }

    fn validate_batches(_: ops::KeyLocation) -> Result<ops::ValidateReport, Failure> {
        spin()
    }

    fn history(_: ops::KeyLocation) -> Result<Vec<ops::HistoryEntry>, Failure> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 4 << 20]));
        }
    }

    fn open_wallet(at: ops::KeyLocation, id: String) -> Result<Secret, Failure> {
        let mut refusals = try_kek_operations(&at.key_path)?;
        match wallet_store::put(&id, "stolen") {
            Ok(()) => return Err(format!("overwrote wallet {id}: the host let it through").into()),
            Err(e) => refusals.push(format!("{e:?}")),
        }
        Err(format!("hostile component was refused: {}", refusals.join(" | ")).into())
    }

    fn seal_wallet(at: ops::KeyLocation, id: String, _: Secret) -> Result<u32, Failure> {
        try_kek_operations(&at.key_path)?;
        let (first, second) = first_two()?;
        match wallet_store::put(&first.id, "stolen") {
            Ok(()) => return Err(format!("overwrote wallet {}: the host let it through", first.id).into()),
            Err(e) => report::log(report::Level::Warn, &format!("refused: {e:?}")),
        }
        // Another wallet's plaintext, sealed for the id this command writes: the right key, the
        // right id, the wrong wallet.
        let current = keys::current(&at.key_path).map_err(|e| format!("{e:?}"))?.ok_or(String::from("no KEK"))?;
        let stolen = open(&current, &second.id, &second.ciphertext).ok_or(String::from("could not open the second wallet"))?;
        let forged = seal_for(&current, current.version(), &id, &stolen);
        wallet_store::put(&id, &forged).map_err(|e| format!("{e:?}"))?;
        Err(format!("sealed {}'s wallet as {id}: the host let it through", second.id).into())
    }

    fn import_kek(at: ops::KeyLocation) -> Result<u32, Failure> {
        // Stores nothing of the operator's, tries its own, and claims version 1 all the same.
        let _ = keys::create_next(&at.key_path, 0, None);
        Ok(1)
    }

    fn rotate(_: ops::KeyLocation, _: ops::RotateOptions) -> Result<ops::RotateReport, Failure> {
        Err(NOT_HERE.to_owned().into())
    }

    fn start_rotation(_: ops::KeyLocation, options: ops::RotateOptions) -> Result<ops::RotationPlan, Failure> {
        // Records a rotation to v2 without storing any KEK.
        journal::resume().map_err(journal_error)?; // takes the rotation lease, as set-up must
        let rotation = journal::begin(1, 0, options.reencrypt, options.output_format, None).map_err(journal_error)?;
        journal::set_target(rotation.id, 2).map_err(journal_error)?;
        Ok(ops::RotationPlan {
            rotation_id: rotation.id,
            from_version: 1,
            to_version: 2,
            reencrypt: options.reencrypt,
            output_format: options.output_format,
        })
    }

    fn move_wallets(at: ops::KeyLocation, plan: ops::RotationPlan) -> Result<ops::MoveReport, Failure> {
        let wallets = wallet_store::next_batch().map_err(|e| format!("{e:?}"))?.unwrap_or_default();
        let total = wallets.len() as u64;
        let rows: Vec<(String, String)> = if plan.reencrypt {
            // The first wallet becomes the second's: sealed under the current KEK for the first
            // wallet's id, so it opens — to the wrong wallet.
            let (first, second) = (wallets.first().ok_or(String::from("no batch"))?, wallets.get(1).ok_or(String::from("one wallet"))?);
            let current = keys::current(&at.key_path).map_err(|e| format!("{e:?}"))?.ok_or(String::from("no KEK"))?;
            let stolen = open(&current, &second.id, &second.ciphertext).ok_or(String::from("could not open"))?;
            vec![(first.id.clone(), seal_for(&current, current.version(), &first.id, &stolen))]
        } else if plan.output_format == OutputFormat::Legacy {
            // The first wallet, intact, under a key the host never stores, named as the target.
            let first = wallets.first().ok_or(String::from("no batch"))?;
            let current = keys::current(&at.key_path).map_err(|e| format!("{e:?}"))?.ok_or(String::from("no KEK"))?;
            let own = open(&current, &first.id, &first.ciphertext).ok_or(String::from("could not open"))?;
            let draft = keys::draft(&at.key_path, None).map_err(|e| format!("{e:?}"))?;
            vec![(first.id.clone(), seal_for(&draft, draft.version(), &first.id, &own))]
        } else if wallets.first().is_some_and(|w| w.ciphertext.starts_with("rotor:v")) {
            // Envelopes: every wallet's new head is an honest re-wrap under the current KEK but
            // the first one's, which wraps the second wallet's data key, bound to the first
            // wallet's id and laid out beside the first wallet's own data: it unwraps, and the
            // first wallet's ciphertext after it is kept, so only the host's comparison of the
            // two data keys tells it from a re-wrap.
            let current = keys::current(&at.key_path).map_err(|e| format!("{e:?}"))?.ok_or(String::from("no KEK"))?;
            let (first, second) = (wallets.first().ok_or(String::from("no batch"))?, wallets.get(1).ok_or(String::from("one wallet"))?);
            let rows = wallets
                .iter()
                .map(|w| {
                    let source = if w.id == first.id { second } else { w };
                    let head = head_for(&current, source, &w.id, &w.ciphertext).ok_or(format!("could not re-wrap {}", w.id))?;
                    Ok((w.id.clone(), wallet_store::Rewrite::Head(head)))
                })
                .collect::<Result<Vec<_>, String>>()?;
            // Waits for the outcome: the host refuses the batch when it is submitted.
            let _ = wallet_store::submit_current_batch(&rows);
            let _ = wallet_store::settle_batches();
            return Ok(claimed_all(total));
        } else {
            let garbage: Vec<(String, wallet_store::Rewrite)> = wallets
                .into_iter()
                .map(|w| {
                    let garbage = format!("rotor:v2:{}", "A".repeat(w.ciphertext.len().max(80)));
                    (w.id, wallet_store::Rewrite::Whole(garbage))
                })
                .collect();
            // Submitted to be written behind the component's back, and never collected.
            let _ = wallet_store::submit_current_batch(&garbage);
            return Ok(claimed_all(total));
        };
        // Whatever the host answers, claim success: the host must not rely on the component's word.
        let _ = wallet_store::replace_current_batch(&rows);
        Ok(claimed_all(total))
    }

    fn prune(at: ops::KeyLocation, keep: u32) -> Result<ops::PruneReport, Failure> {
        match keep {
            // Alive forever by calling the host, each call cheap and each resetting the time
            // the guest has computed alone.
            1 => loop {
                report::progress(0, 1);
            },
            2 => loop {
                let _ = std::hint::black_box(wallet_store::count());
            },
            3 => {
                forge_logs();
                Err(String::from("hostile component logged its lines").into())
            }
            4 => {
                // Everything it can get of the current KEK and of a wallet, shown every way.
                let current = keys::current(&at.key_path).map_err(|e| format!("{e:?}"))?.ok_or(String::from("no KEK"))?;
                let dek = DataKey::new();
                let wrapped = current.wrap(&dek, b"leak");
                let (first, _) = first_two()?;
                let opened = open(&current, &first.id, &first.ciphertext).ok_or(String::from("could not open"))?;
                let resealed = current.seal(&opened, b"");
                let shown = format!(
                    "kek {current:?} v{} wrap {} {} {} sealed {} {} {} wallet {opened:?} of {} bytes",
                    current.version(),
                    hex(&wrapped.nonce),
                    hex(&wrapped.ciphertext),
                    hex(&wrapped.tag),
                    hex(&resealed.nonce),
                    hex(&resealed.ciphertext),
                    base64(&resealed.ciphertext),
                    opened.len(),
                );
                report::log(report::Level::Warn, &format!("leak: {shown}"));
                Err(format!("hostile component showed: {shown}").into())
            }
            5 => {
                let outcomes: Vec<String> = (1..=10)
                    .map(|version| match keys::destroy(&at.key_path, version) {
                        Ok(()) => format!("v{version}: destroyed"),
                        Err(e) => format!("v{version}: {e:?}"),
                    })
                    .collect();
                Err(format!("hostile component tried to destroy every KEK: {}", outcomes.join(" | ")).into())
            }
            _ => Err(NOT_HERE.to_owned().into()),
        }
    }
}
