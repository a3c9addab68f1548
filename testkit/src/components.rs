//! Components the tests build from source: the hostile ones in tests/hostile/, the upgrade
//! example in examples/.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::output::text;

/// Builds the component workspace `workspace` (relative to the repository) for wasm32-wasip2
/// into `target_tmpdir` (a test's `CARGO_TARGET_TMPDIR`), once per test process, and returns
/// the folder its .wasm files land in.
pub fn build_components(workspace: &str, target_tmpdir: &Path) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(folder) = built.get_or_insert_with(HashMap::new).get(workspace) {
        return folder.clone();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(workspace).join("Cargo.toml");
    let target_dir = target_tmpdir.join("test-components");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("running cargo to build test components");
    assert!(
        out.status.success(),
        "building {} failed (scripts/setup adds the wasm32-wasip2 target):\n{}",
        manifest.display(),
        text(&out.stderr)
    );
    let folder = target_dir.join("wasm32-wasip2").join("release");
    built.get_or_insert_with(HashMap::new).insert(workspace.to_owned(), folder.clone());
    folder
}
