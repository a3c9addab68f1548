//! The mount's timestamps: RFC 3339 in UTC to the second, as OpenBao's own responses give them.

use std::time::SystemTime;

/// Now, as the mount records it.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
