use core::fmt;

/// Why a key or ciphertext was refused. Never carries key or plaintext bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// A KEK was not 32 bytes given as 64 hex characters.
    InvalidKey(&'static str),
    /// The ciphertext is not well-formed for the format it claims; says which part is wrong.
    Malformed(&'static str),
    /// The ciphertext is well-formed but does not authenticate under this key and id:
    /// the wrong KEK, a ciphertext copied from another row, or tampering.
    Authentication,
    /// The system's random source failed.
    Randomness,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::InvalidKey(why) => write!(f, "invalid KEK: {why}"),
            CodecError::Malformed(why) => write!(f, "malformed ciphertext: {why}"),
            CodecError::Authentication => {
                f.write_str("ciphertext does not open: wrong KEK, copied from another wallet id, or tampered")
            }
            CodecError::Randomness => f.write_str("the random number source failed"),
        }
    }
}

impl core::error::Error for CodecError {}
