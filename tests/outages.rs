//! Vault and the database failing mid-rotation (being written).

mod support;
