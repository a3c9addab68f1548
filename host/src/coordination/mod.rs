//! Who may do what to a rotation, across the workers of one process and across processes:
//! the rotation lease ([`Lease`]: one rotor at a time sets a rotation up, sweeps it or closes
//! it) and the key ranges a rotation's workers claim and walk ([`Walk`]). The SQL behind both
//! lives in [`crate::store`]; the rules for using it live here.

mod lease;
mod walk;

pub use lease::Lease;
pub use walk::{Batches, NotRewrapped, SharedScan, SweepParts, Walk, WalkSpec, WorkerBatches, find_odd_rows};
