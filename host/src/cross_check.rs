//! The cross-check: when a rotation runs a component other than rotor's reference one, every
//! batch it asks to write is first opened by the reference component, in an instance of its
//! own, and compared with what the row holds now. A buggy or hostile upgrade cannot write a
//! wallet that rotor's own code cannot read back to the same plaintext.

use std::fmt;

use anyhow::Context;
use zeroize::{Zeroize, Zeroizing};

use crate::bindings::wallet_store::Replacement;
use crate::capabilities::{BatchCheck, BoxFuture, CrossCheckFailed};
use crate::component::Instance;
use crate::vault::KvBackend;

/// The reference component and the KEKs it opens wallets with.
pub struct CrossCheck {
    reference: Instance,
    kv: KvBackend,
    key_path: String,
    keks: Keks,
    /// Rows checked so far, for the log.
    checked: u64,
}

/// KEK versions and hex keys, as the `codec.open` export takes them; wiped when dropped.
#[derive(Default)]
struct Keks(Vec<(u32, String)>);

impl Drop for Keks {
    fn drop(&mut self) {
        for (_, key) in &mut self.0 {
            key.zeroize();
        }
    }
}

impl fmt::Debug for Keks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<u32> = self.0.iter().map(|(v, _)| *v).collect();
        f.debug_struct("Keks").field("versions", &versions).finish_non_exhaustive()
    }
}

impl CrossCheck {
    /// `reference` must be an instance of the built-in component (its imports are not used:
    /// only the pure `codec` export is called).
    pub fn new(reference: Instance, kv: KvBackend, key_path: String) -> CrossCheck {
        CrossCheck { reference, kv, key_path, keks: Keks::default(), checked: 0 }
    }

    /// How many wallets the reference component has checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// `Ok` if every replacement opens, under the reference component, to exactly what the row
    /// it replaces opens to. Vault failures are errors too: an unchecked batch is not written.
    pub async fn verify(&mut self, rows: &[Replacement]) -> wasmtime::Result<()> {
        let mut reloaded = false;
        for row in rows {
            let before = self.open(&row.id, &row.expected).await?;
            let mut after = self.open(&row.id, &row.replacement).await?;
            if after.is_err() && !reloaded {
                // The component may have stored a KEK since the keys were read: read them again once.
                self.reload().await?;
                reloaded = true;
                after = self.open(&row.id, &row.replacement).await?;
            }
            let failure = match (before, after) {
                (Ok(before), Ok(after)) if before == after => None,
                (Ok(_), Ok(_)) => {
                    Some("the replacement opens to a different wallet than the row holds".to_owned())
                }
                (_, Err(reason)) => {
                    Some(format!("the reference component cannot open the replacement ({reason})"))
                }
                (Err(reason), Ok(_)) => Some(format!(
                    "the reference component cannot open the row's current ciphertext ({reason}), so it \
                     cannot confirm that the replacement holds the same wallet"
                )),
            };
            if let Some(reason) = failure {
                tracing::error!(id = %row.id, "cross-check failed: {reason}");
                return Err(wasmtime::Error::new(CrossCheckFailed { id: row.id.clone(), reason }));
            }
        }
        self.checked += rows.len() as u64;
        tracing::debug!(
            rows = rows.len(),
            total = self.checked,
            "batch cross-checked by the reference component"
        );
        Ok(())
    }
}

impl BatchCheck for CrossCheck {
    fn verify<'a>(&'a mut self, rows: &'a [Replacement]) -> BoxFuture<'a, wasmtime::Result<()>> {
        Box::pin(CrossCheck::verify(self, rows))
    }
}

impl CrossCheck {
    /// One ciphertext opened by the reference component with the keys read so far. The outer
    /// `Err` is a failure of the reference itself; the inner one, a ciphertext it cannot open.
    async fn open(
        &mut self,
        id: &str,
        ciphertext: &str,
    ) -> wasmtime::Result<Result<Zeroizing<Vec<u8>>, String>> {
        if self.keks.0.is_empty() {
            self.reload().await?;
        }
        let opened = self.reference.codec_open(&self.keks.0, id, ciphertext).await.map_err(|e| {
            wasmtime::Error::from_anyhow(e.context("cross-check: the reference component failed"))
        })?;
        Ok(opened.map(Zeroizing::new))
    }

    /// Reads every KEK Vault keeps for the key path: the current one, rotor's archive
    /// (`v<N>`), and the seed's archives (given version 0: they only open legacy wallets).
    async fn reload(&mut self) -> wasmtime::Result<()> {
        self.read_keks().await.map_err(wasmtime::Error::from_anyhow)
    }

    async fn read_keks(&mut self) -> anyhow::Result<()> {
        let mut keks = Keks::default();
        let current = self.kv.read(&self.key_path, None).await.context("cross-check: reading the KEK")?;
        if let Some(mut secret) = current
            && let Some(key) = secret.data.get_mut("key")
        {
            keks.0.push((secret.version as u32, std::mem::take(&mut **key)));
        }
        let folder = format!("{}-archive/", self.key_path);
        let entries = self.kv.list(&folder).await.context("cross-check: listing the KEK archive")?;
        for name in entries {
            let version = match name.strip_prefix('v').map(str::parse::<u32>) {
                Some(Ok(version)) => version,
                _ if name.parse::<u64>().is_ok() => 0,
                _ => continue,
            };
            let path = format!("{folder}{name}");
            let archived = self.kv.read(&path, None).await.context("cross-check: reading the KEK archive")?;
            if let Some(mut secret) = archived
                && let Some(key) = secret.data.get_mut("key")
                && !keks.0.iter().any(|(v, _)| *v == version && version != 0)
            {
                keks.0.push((version, std::mem::take(&mut **key)));
            }
        }
        self.keks = keks;
        Ok(())
    }
}
