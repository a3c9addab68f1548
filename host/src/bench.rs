//! `rotor bench`: the benchmark is a binary of its own, `rotor-bench` (the bench/ crate), so that
//! the production `rotor` binary links neither its chart library nor its font. `rotor bench`
//! runs the `rotor-bench` in rotor's own folder, with the same options, in rotor's place.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use clap::Args;

/// The bench binary's file name, in the same folder as `rotor`.
pub const BENCH_BINARY: &str = "rotor-bench";

/// `rotor bench`'s options, handed to rotor-bench as they are: it parses them.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// rotor-bench's options (`rotor bench --help` lists them when rotor-bench is built).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "OPTIONS")]
    pub options: Vec<OsString>,
}

impl BenchArgs {
    /// Whether the options ask for help, which rotor-bench gives (rotor's own when it is absent).
    pub fn wants_help(&self) -> bool {
        self.options
            .iter()
            .take_while(|option| *option != "--")
            .any(|option| option == "-h" || option == "--help")
    }
}

/// Why `rotor bench` could not run rotor-bench.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// rotor-bench is not built, or not installed next to rotor.
    #[error(
        "`rotor bench` runs the rotor-bench binary, and there is none in {dir}: build it with \
         `cargo build --release -p rotor-bench` (`cargo build --release --workspace` builds rotor \
         and rotor-bench), or install it next to rotor"
    )]
    Missing {
        /// The folder it was looked for in: rotor's own.
        dir: String,
    },
    /// It is there but did not start (not executable, say).
    #[error("could not run {path}: {source}")]
    Exec {
        /// The rotor-bench binary.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Replaces this process with rotor-bench, given `global` (the flags of rotor's own that the
/// bench honours, given before `bench`) then the options. Returns only if it could not.
///
/// Replacing rather than running it as a child: its stdout, stderr, exit code and process id are
/// `rotor bench`'s, and a signal sent to `rotor bench` reaches the bench itself, which stops as
/// it would on its own. Its argv[0] is `<rotor> bench`, so that its usage lines and the report's
/// command line read as the command that was typed.
pub fn exec(global: &[OsString], args: &BenchArgs) -> BenchError {
    let rotor = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rotor"));
    let bench = rotor.with_file_name(BENCH_BINARY);
    if !bench.is_file() {
        let dir = rotor.parent().unwrap_or(Path::new(".")).display().to_string();
        return BenchError::Missing { dir };
    }
    let mut invoked_as = std::env::args_os().next().unwrap_or_else(|| "rotor".into());
    invoked_as.push(" bench");
    let source = std::process::Command::new(&bench).arg0(invoked_as).args(global).args(&args.options).exec();
    BenchError::Exec { path: bench.display().to_string(), source }
}
