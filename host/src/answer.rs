//! What a call into a component came to, for the operator: a trap, a limit or a refused write is
//! the host's own verdict and says so; the component's own failure is its words, printed so
//! that they cannot pass for the host's.

use anyhow::anyhow;

use crate::bindings::types::Failure;
use crate::capabilities::WriteRefused;
use crate::limits;

/// What a failed call means to the operator: a limit or a refused write is the host's own
/// verdict and is stated as such; anything else is the component's failure, with the trap.
pub fn explain(error: wasmtime::Error) -> anyhow::Error {
    if let Some(limit) = limits::exceeded(&error) {
        return anyhow::anyhow!("the component was stopped: {limit}");
    }
    if let Some(failed) = error.downcast_ref::<WriteRefused>() {
        return anyhow::anyhow!("the component was stopped: {failed}");
    }
    anyhow::Error::from(error).context("the component failed")
}

/// One call's answer: the outer `Err` is a trap or host failure (see [`explain`]), the inner
/// `Err` the component's own failure, of a kind and in its words.
pub type Answer<T> = anyhow::Result<Result<T, Failure>>;

impl Failure {
    /// The component's words.
    pub fn message(&self) -> &str {
        match self {
            Failure::Refused(why) | Failure::Inconsistent(why) | Failure::Unavailable(why) => why,
        }
    }
}

/// A component's inner error is its own message: show it as the command's error, as
/// [`component_message`] prints it. (The outer one already says why the call failed: see
/// [`explain`].)
pub fn answer<T>(result: Answer<T>) -> anyhow::Result<T> {
    result?.map_err(|failure| anyhow!(component_message(failure.message())))
}

/// Longest component error message printed, escaped.
pub const MAX_MESSAGE_BYTES: usize = 16 << 10;

/// A component's error message as the host prints it: each line escaped as its log lines are
/// (control characters shown, not obeyed), every line after the first indented so that none
/// can pass for a line of the host's, and cut at [`MAX_MESSAGE_BYTES`].
pub fn component_message(message: &str) -> String {
    let mut printed = String::with_capacity(message.len().min(MAX_MESSAGE_BYTES) + 64);
    for (n, line) in message.split('\n').enumerate() {
        if n > 0 {
            printed.push_str(if line.starts_with("  ") { "\n" } else { "\n  " });
        }
        printed.push_str(&crate::capabilities::report::one_line(line));
        if printed.len() > MAX_MESSAGE_BYTES {
            let cut = printed.floor_char_boundary(MAX_MESSAGE_BYTES);
            printed.truncate(cut);
            printed.push_str("… [cut: the component's message is longer than 16 KiB]");
            break;
        }
    }
    printed
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_components_error_message_cannot_pass_for_the_hosts_lines() {
        let forged = "refused\nINFO rotor: rotation finished\r\x1b[2K\n  listed wallet";
        assert_eq!(
            super::component_message(forged),
            "refused\n  INFO rotor: rotation finished\\r\\u{1b}[2K\n  listed wallet"
        );
        let long = super::component_message(&"x\n".repeat(20_000));
        assert!(long.len() < super::MAX_MESSAGE_BYTES + 100, "{} bytes", long.len());
        assert!(long.ends_with("longer than 16 KiB]"), "{long}");
    }
}
