//! Builds rotor's components for `wasm32-wasip2` — the crypto core (`guest/`) and the audit
//! (`audit/`) — and hands them to the host crate, which embeds them: `target/release/rotor`
//! carries the components it runs by default.
//!
//! The guest is built by a nested cargo with its own target directory, since the outer build
//! holds the lock on the main one.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap();
    for input in ["guest", "audit", "codec", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("guest-build");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--package", "rotor-guest", "--package", "rotor-audit"])
        .args(["--profile", "guest", "--target", TARGET, "--locked"])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host (say, -C target-cpu=native) must not reach the wasm build.
        // SIMD128 (fixed-width SIMD, in every engine rotor runs on: wasmtime enables it by
        // default) lets base64-simd decode and encode wallets 16 bytes at a time.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+simd128")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("failed to run cargo to build the guest component");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            format!(
                "\nhint: the {TARGET} target is missing: run `rustup target add {TARGET}` (scripts/setup does)"
            )
        } else {
            String::new()
        };
        panic!("building the components failed:\n{stderr}{hint}");
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    for component in ["rotor_guest.wasm", "rotor_audit.wasm"] {
        let built = target_dir.join(TARGET).join("guest").join(component);
        let out = out_dir.join(component);
        std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("copying {} failed: {e}", built.display()));
    }
}
