//! A rotation component (world `rotor:kek/rotator`) in which every export misbehaves, each in
//! one way a hostile or broken upgrade might. `tests/sandbox.rs` runs each through the real
//! `rotor` binary and checks that the host stops it and that nothing changed.
//!
//! | export        | what it does                                                    |
//! |---------------|-----------------------------------------------------------------|
//! | validate(-batches) | computes forever                                           |
//! | history       | allocates memory without bound                                  |
//! | open-wallet   | reads a Vault path outside its grant, then writes a wallet      |
//! | start-rotation| records a rotation but stores no KEK                            |
//! | move-wallets  | replaces every wallet with garbage                              |
//! | prune         | by `keep`: 1 calls `report.progress` forever, 2 `wallet-store.count` forever, 3 forges log lines |

mod bindings {
    wit_bindgen::generate!({ world: "rotator", path: "../../../wit" });

    use super::Hostile;
    export!(Hostile with_types_in crate::bindings);
}

use bindings::exports::rotor::kek::{codec, operations as ops};
use bindings::rotor::kek::{journal, kv, report, wallet_store};

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

impl codec::Guest for Hostile {
    fn seal(_: String, _: u32, _: String, _: Vec<u8>) -> Result<String, String> {
        Err(NOT_HERE.into())
    }

    fn open(_: Vec<(u32, String)>, _: String, _: String) -> Result<Vec<u8>, String> {
        Err(NOT_HERE.into())
    }

    fn inspect(_: String) -> Result<u32, String> {
        Err(NOT_HERE.into())
    }
}

impl ops::Guest for Hostile {
    fn validate(_: ops::KeyLocation, _: u32) -> Result<ops::ValidateReport, String> {
        spin()
    }

    fn validate_batches(_: ops::KeyLocation) -> Result<ops::ValidateReport, String> {
        spin()
    }

    fn history(_: ops::KeyLocation) -> Result<Vec<ops::HistoryEntry>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 4 << 20]));
        }
    }

    fn open_wallet(at: ops::KeyLocation, id: String) -> Result<Vec<u8>, String> {
        let mut refusals = Vec::new();
        match kv::read("ibn/other-team-secret", None) {
            Ok(_) => return Err("read ibn/other-team-secret: the host let it through".into()),
            Err(e) => refusals.push(format!("{e:?}")),
        }
        let archive = format!("{}-archive/v1", at.key_path);
        match kv::write(&archive, &[("key".into(), "00".repeat(32))], None) {
            Ok(_) => return Err(format!("wrote {archive}: the host let it through")),
            Err(e) => refusals.push(format!("{e:?}")),
        }
        match wallet_store::put(&id, "stolen") {
            Ok(()) => return Err(format!("overwrote wallet {id}: the host let it through")),
            Err(e) => refusals.push(format!("{e:?}")),
        }
        Err(format!("hostile component was refused: {}", refusals.join(" | ")))
    }

    fn rotate(_: ops::KeyLocation, _: ops::RotateOptions) -> Result<ops::RotateReport, String> {
        Err(NOT_HERE.into())
    }

    fn start_rotation(_: ops::KeyLocation, _: ops::RotateOptions) -> Result<ops::RotationPlan, String> {
        // Records a rotation to v2 without storing any KEK.
        let format = bindings::rotor::kek::types::OutputFormat::Envelope;
        journal::resume().map_err(journal_error)?; // takes the rotation lease, as set-up must
        let rotation = journal::begin(1, 0, false, format, None).map_err(journal_error)?;
        journal::set_target(rotation.id, 2).map_err(journal_error)?;
        Ok(ops::RotationPlan {
            rotation_id: rotation.id,
            from_version: 1,
            to_version: 2,
            reencrypt: false,
            output_format: format,
        })
    }

    fn move_wallets(_: ops::KeyLocation, _: ops::RotationPlan) -> Result<ops::MoveReport, String> {
        let wallets = wallet_store::scan(None, 1000, None).map_err(|e| format!("{e:?}"))?;
        let garbage: Vec<wallet_store::Replacement> = wallets
            .into_iter()
            .map(|w| wallet_store::Replacement {
                replacement: format!("rotor:v2:{}", "A".repeat(w.ciphertext.len().max(80))),
                expected: w.ciphertext,
                id: w.id,
            })
            .collect();
        let total = garbage.len() as u64;
        // Whatever the host answers, claim success: the host must not rely on the component's word.
        let _ = wallet_store::replace_batch(&garbage);
        Ok(ops::MoveReport { seen: total, rotated: total, unchanged: 0, failed: Vec::new() })
    }

    fn seal_wallet(_: ops::KeyLocation, _: String, _: Vec<u8>) -> Result<u32, String> {
        Err(NOT_HERE.into())
    }

    fn import_kek(_: ops::KeyLocation, _: String) -> Result<u32, String> {
        Err(NOT_HERE.into())
    }

    fn prune(_: ops::KeyLocation, keep: u32) -> Result<ops::PruneReport, String> {
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
                Err("hostile component logged its lines".into())
            }
            _ => Err(NOT_HERE.into()),
        }
    }
}
