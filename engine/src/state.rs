//! Snapshots: every open window plus per-partition positions and progress, and the documents
//! handed to the sink and not yet acknowledged ([`DeliveryState`]), in a compact, versioned,
//! checksummed binary format.
//!
//! Layout: `KAPPASNP` magic, format version (u16 LE), job fingerprint (u64 LE), payload length
//! (u64 LE), postcard payload, xxh3-64 of the payload (u64 LE). A snapshot of another job logic
//! (fingerprint mismatch), of an unknown format version, or torn (length or checksum mismatch) is
//! refused; nothing is ever restored from a partial file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::delivery::DeliveryState;
use crate::key::KeyValue;
use crate::store::{Counters, WindowState};
use crate::time::EpochMillis;
use crate::window::LogProgress;

const MAGIC: &[u8; 8] = b"KAPPASNP";
/// Current snapshot format version.
pub const FORMAT_VERSION: u16 = 3;
/// The previous format (no delivery state), still read: its documents were all acknowledged
/// before it was taken.
const FORMAT_VERSION_2: u16 = 2;

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a Kappa snapshot.
    #[error("not a Kappa snapshot (bad magic)")]
    BadMagic,
    /// Written by a newer or older engine with an incompatible format.
    #[error(
        "snapshot format version {found} is not supported (this engine reads {FORMAT_VERSION_2} and {FORMAT_VERSION})"
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
    /// Documents not yet acknowledged by the sink, and the index's progress.
    pub delivery: DeliveryState,
}

/// Format 2: a [`Snapshot`] without delivery state.
#[derive(Deserialize)]
struct SnapshotV2 {
    positions: BTreeMap<u32, i64>,
    progress: LogProgress,
    final_through: Option<EpochMillis>,
    counters: Counters,
    windows: Vec<(EpochMillis, Box<[KeyValue]>, WindowState)>,
}

impl From<SnapshotV2> for Snapshot {
    fn from(v2: SnapshotV2) -> Self {
        // A format-2 checkpoint wrote every document before it was taken: everything it had
        // processed was in the index.
        let delivery =
            DeliveryState { delivered: v2.positions.clone(), ..DeliveryState::default() };
        Snapshot {
            positions: v2.positions,
            progress: v2.progress,
            final_through: v2.final_through,
            counters: v2.counters,
            windows: v2.windows,
            delivery,
        }
    }
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
        if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
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
        if version == FORMAT_VERSION_2 {
            let v2: SnapshotV2 =
                postcard::from_bytes(payload).map_err(|_| SnapshotError::Corrupt)?;
            return Ok(v2.into());
        }
        postcard::from_bytes(payload).map_err(|_| SnapshotError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_v2(positions: &BTreeMap<u32, i64>) -> Vec<u8> {
        #[derive(Serialize)]
        struct V2<'a> {
            positions: &'a BTreeMap<u32, i64>,
            progress: LogProgress,
            final_through: Option<EpochMillis>,
            counters: Counters,
            windows: Vec<(EpochMillis, Box<[KeyValue]>, WindowState)>,
        }
        let v2 = V2 {
            positions,
            progress: LogProgress::default(),
            final_through: Some(60_000),
            counters: Counters { records_in: 9, ..Counters::default() },
            windows: Vec::new(),
        };
        postcard::to_stdvec(&v2).unwrap()
    }

    fn framed(version: u16, fingerprint: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&fingerprint.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
        out
    }

    #[test]
    fn a_format_2_snapshot_restores_with_everything_it_processed_delivered() {
        let positions: BTreeMap<u32, i64> = [(0, 120), (3, 7)].into();
        let snap = Snapshot::decode(&framed(2, 42, &payload_v2(&positions)), 42).unwrap();
        assert_eq!(snap.positions, positions);
        assert_eq!(snap.final_through, Some(60_000));
        assert_eq!(snap.counters.records_in, 9);
        assert_eq!(snap.delivery.delivered, positions);
        assert!(snap.delivery.undelivered.is_empty());
    }

    #[test]
    fn the_current_format_round_trips_and_unknown_ones_are_refused() {
        let snap = Snapshot {
            positions: [(0, 5)].into(),
            delivery: DeliveryState { delivered: [(0, 2)].into(), ..DeliveryState::default() },
            ..Snapshot::default()
        };
        let back = Snapshot::decode(&snap.encode(7), 7).unwrap();
        assert_eq!((back.positions, back.delivery), (snap.positions, snap.delivery));
        let future = framed(FORMAT_VERSION + 1, 7, &[]);
        assert_eq!(
            Snapshot::decode(&future, 7).unwrap_err(),
            SnapshotError::Version { found: FORMAT_VERSION + 1 }
        );
    }
}
