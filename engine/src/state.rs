//! Snapshots: every open window plus per-partition positions and progress, in a compact,
//! versioned, checksummed binary format.
//!
//! Layout: `KAPPASNP` magic, format version (u16 LE), job fingerprint (u64 LE), payload length
//! (u64 LE), postcard payload, xxh3-64 of the payload (u64 LE). A snapshot of another job logic
//! (fingerprint mismatch), of an unknown format version, or torn (length or checksum mismatch) is
//! refused; nothing is ever restored from a partial file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::key::KeyValue;
use crate::store::{Counters, WindowState};
use crate::time::EpochMillis;
use crate::window::LogProgress;

const MAGIC: &[u8; 8] = b"KAPPASNP";
/// Current snapshot format version.
pub const FORMAT_VERSION: u16 = 2;

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a Kappa snapshot.
    #[error("not a Kappa snapshot (bad magic)")]
    BadMagic,
    /// Written by a newer or older engine with an incompatible format.
    #[error(
        "snapshot format version {found} is not supported (this engine reads {FORMAT_VERSION})"
    )]
    Version {
        /// Version found in the file.
        found: u16,
    },
    /// Written by another job logic: replaying it would mix two logics in one index.
    #[error("snapshot belongs to another job logic (fingerprint {found:016x}, expected {expected:016x}); a logic change needs a new spec.version")]
    Fingerprint {
        /// Fingerprint in the file.
        found: u64,
        /// Fingerprint of the running job.
        expected: u64,
    },
    /// Truncated or corrupted.
    #[error("snapshot is truncated or corrupted")]
    Corrupt,
}

/// The restorable state of a job version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Next offset to process, per partition.
    pub positions: BTreeMap<u32, i64>,
    /// Log-time progress per partition.
    pub progress: LogProgress,
    /// Watermark of the last eviction.
    pub final_through: Option<EpochMillis>,
    /// Counters so far.
    pub counters: Counters,
    /// Open windows, sorted by (start, key).
    pub windows: Vec<(EpochMillis, Box<[KeyValue]>, WindowState)>,
}

impl Snapshot {
    /// Encodes the snapshot for a job with `fingerprint`.
    pub fn encode(&self, fingerprint: u64) -> Vec<u8> {
        let payload = postcard::to_stdvec(self).expect("snapshot serializes");
        let mut out = Vec::with_capacity(payload.len() + 34);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&fingerprint.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        out
    }

    /// Decodes a snapshot, checking format, fingerprint and checksum.
    pub fn decode(bytes: &[u8], fingerprint: u64) -> Result<Self, SnapshotError> {
        let take = |at: usize, n: usize| bytes.get(at..at + n).ok_or(SnapshotError::Corrupt);
        if take(0, 8)? != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u16::from_le_bytes(take(8, 2)?.try_into().expect("2 bytes"));
        if version != FORMAT_VERSION {
            return Err(SnapshotError::Version { found: version });
        }
        let found = u64::from_le_bytes(take(10, 8)?.try_into().expect("8 bytes"));
        if found != fingerprint {
            return Err(SnapshotError::Fingerprint { found, expected: fingerprint });
        }
        let len = u64::from_le_bytes(take(18, 8)?.try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| SnapshotError::Corrupt)?;
        let payload = take(26, len)?;
        let sum = u64::from_le_bytes(take(26 + len, 8)?.try_into().expect("8 bytes"));
        if bytes.len() != 34 + len || xxhash_rust::xxh3::xxh3_64(payload) != sum {
            return Err(SnapshotError::Corrupt);
        }
        postcard::from_bytes(payload).map_err(|_| SnapshotError::Corrupt)
    }
}
