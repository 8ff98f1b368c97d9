//! Checkpoints as files in a local directory (local runs): one file per checkpoint, written to a
//! temporary name, fsynced, renamed into place and the directory fsynced, so a crash leaves
//! either the complete new file or none. The newest two are kept; a torn or corrupt newest file
//! falls back to the one before.
//!
//! File layout (little endian): [`MAGIC`], seq `u64`, taken_at_ms `i64`, payload length `u64`,
//! payload, xxh3-64 of everything before it `u64`.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::{Checkpoint, CheckpointError, CheckpointStore};

/// First bytes of every checkpoint file (format version 1).
pub const MAGIC: [u8; 8] = *b"KAPPACP1";
/// How many checkpoint files are kept (the newest plus one to fall back to).
pub const KEEP_FILES: usize = 2;

const FILE_PREFIX: &str = "checkpoint-";
const FILE_SUFFIX: &str = ".bin";
const TEMP_SUFFIX: &str = ".tmp";
/// Magic + seq + taken_at + length.
const HEADER_LEN: usize = 8 + 8 + 8 + 8;
const TRAILER_LEN: usize = 8;

/// Checkpoints in a directory, one `checkpoint-<seq:020>.bin` file each.
#[derive(Debug)]
pub struct FsCheckpointStore {
    dir: PathBuf,
    latest_seq: Option<u64>,
}

impl FsCheckpointStore {
    /// A store in `dir`, created if missing. Temporary files left by a crashed save are removed.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| dir_error(&dir, source))?;
        for entry in fs::read_dir(&dir).map_err(|source| dir_error(&dir, source))? {
            let entry = entry.map_err(|source| dir_error(&dir, source))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(FILE_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                tracing::info!(file = %entry.path().display(), "removing an unfinished checkpoint");
                // Best effort: a leftover temp file is never read.
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self { dir, latest_seq: None })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of checkpoint `seq`.
    pub fn file_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{FILE_PREFIX}{seq:020}{FILE_SUFFIX}"))
    }

    /// Sequence numbers of the checkpoint files present, ascending.
    fn stored_seqs(&self) -> Result<Vec<u64>, CheckpointError> {
        let mut seqs = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|source| dir_error(&self.dir, source))? {
            let entry = entry.map_err(|source| dir_error(&self.dir, source))?;
            let name = entry.file_name();
            let seq = name
                .to_str()
                .and_then(|n| n.strip_prefix(FILE_PREFIX))
                .and_then(|n| n.strip_suffix(FILE_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok());
            seqs.extend(seq);
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Deletes all but the newest [`KEEP_FILES`] files. Failures are logged: an old file that
    /// cannot be removed costs disk, not correctness, and the new checkpoint is durable already.
    fn remove_old(&self) {
        let seqs = match self.stored_seqs() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list old checkpoints to remove");
                return;
            }
        };
        let old = seqs.len().saturating_sub(KEEP_FILES);
        for seq in &seqs[..old] {
            let path = self.file_path(*seq);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove old checkpoint");
            }
        }
    }
}

impl CheckpointStore for FsCheckpointStore {
    fn load_latest(&mut self) -> Result<Option<Checkpoint>, CheckpointError> {
        let seqs = self.stored_seqs()?;
        for &seq in seqs.iter().rev() {
            let path = self.file_path(seq);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                // Removed between listing and reading (another process cleaning up): skip.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(CheckpointError::ReadFile { path, source }),
            };
            match decode(&bytes) {
                Ok(cp) if cp.seq == seq => {
                    self.latest_seq = Some(self.latest_seq.map_or(seq, |l| l.max(seq)));
                    return Ok(Some(cp));
                }
                Ok(cp) => tracing::warn!(
                    file = %path.display(),
                    inner_seq = cp.seq,
                    "checkpoint file name and content disagree: skipped"
                ),
                Err(why) => {
                    tracing::warn!(file = %path.display(), why, "corrupt checkpoint file: skipped")
                }
            }
        }
        Ok(None)
    }

    fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        super::ensure_after_latest(self.latest_seq, checkpoint.seq, || self.describe())?;
        let path = self.file_path(checkpoint.seq);
        let temp = path.with_extension(format!("bin{TEMP_SUFFIX}"));
        let write_error = |source| CheckpointError::WriteFile { path: temp.clone(), source };
        {
            let mut file = File::create(&temp).map_err(write_error)?;
            let header = encode_header(checkpoint);
            let mut hasher = Xxh3::new();
            hasher.update(&header);
            hasher.update(&checkpoint.snapshot);
            file.write_all(&header).map_err(write_error)?;
            file.write_all(&checkpoint.snapshot).map_err(write_error)?;
            file.write_all(&hasher.digest().to_le_bytes()).map_err(write_error)?;
            file.sync_all().map_err(write_error)?;
        }
        fs::rename(&temp, &path)
            .map_err(|source| CheckpointError::WriteFile { path: path.clone(), source })?;
        // The rename is durable only once the directory entry is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| dir_error(&self.dir, source))?;
        self.latest_seq = Some(checkpoint.seq);
        self.remove_old();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }
}

fn dir_error(dir: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Directory { dir: dir.to_owned(), source }
}

fn encode_header(cp: &Checkpoint) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..16].copy_from_slice(&cp.seq.to_le_bytes());
    h[16..24].copy_from_slice(&cp.taken_at_ms.to_le_bytes());
    h[24..32].copy_from_slice(&(cp.snapshot.len() as u64).to_le_bytes());
    h
}

/// Parses and verifies a checkpoint file; the error says why it is unusable.
fn decode(bytes: &[u8]) -> Result<Checkpoint, &'static str> {
    let word = |at: usize| -> [u8; 8] { bytes[at..at + 8].try_into().expect("8 bytes") };
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err("shorter than header and checksum (torn write)");
    }
    if word(0) != MAGIC {
        return Err("not a checkpoint file (bad magic bytes)");
    }
    let len = u64::from_le_bytes(word(24));
    if Some(bytes.len() as u64) != len.checked_add((HEADER_LEN + TRAILER_LEN) as u64) {
        return Err("length does not match the header (torn write)");
    }
    let body_end = bytes.len() - TRAILER_LEN;
    if xxhash_rust::xxh3::xxh3_64(&bytes[..body_end]) != u64::from_le_bytes(word(body_end)) {
        return Err("checksum mismatch");
    }
    Ok(Checkpoint {
        seq: u64::from_le_bytes(word(8)),
        taken_at_ms: i64::from_le_bytes(word(16)),
        snapshot: bytes[HEADER_LEN..body_end].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(seq: u64, len: usize) -> Checkpoint {
        let snapshot = (0..len).map(|i| (i as u64 * 31 + seq) as u8).collect();
        Checkpoint { seq, taken_at_ms: 1_700_000_000_000 + seq as i64, snapshot }
    }

    #[test]
    fn round_trip_survives_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FsCheckpointStore::new(dir.path()).unwrap();
        assert_eq!(store.load_latest().unwrap(), None, "empty directory");
        for (seq, len) in [(1, 0), (2, 10), (3, 300_000)] {
            store.save(&checkpoint(seq, len)).unwrap();
        }
        let mut fresh = FsCheckpointStore::new(dir.path()).unwrap();
        assert_eq!(fresh.load_latest().unwrap(), Some(checkpoint(3, 300_000)));
    }

    #[test]
    fn torn_or_corrupt_newest_falls_back_to_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FsCheckpointStore::new(dir.path()).unwrap();
        store.save(&checkpoint(1, 1000)).unwrap();
        store.save(&checkpoint(2, 1000)).unwrap();

        // Torn: the newest file lost its tail.
        let newest = store.file_path(2);
        let bytes = fs::read(&newest).unwrap();
        fs::write(&newest, &bytes[..bytes.len() - 100]).unwrap();
        let mut fresh = FsCheckpointStore::new(dir.path()).unwrap();
        assert_eq!(fresh.load_latest().unwrap(), Some(checkpoint(1, 1000)));

        // Corrupt: full length, one payload byte flipped.
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 500] ^= 0xff;
        fs::write(&newest, &flipped).unwrap();
        let mut fresh = FsCheckpointStore::new(dir.path()).unwrap();
        assert_eq!(fresh.load_latest().unwrap(), Some(checkpoint(1, 1000)));

        // Nothing usable at all.
        fs::write(store.file_path(1), b"KAPPACP1").unwrap();
        let mut fresh = FsCheckpointStore::new(dir.path()).unwrap();
        assert_eq!(fresh.load_latest().unwrap(), None);
    }

    #[test]
    fn keeps_the_newest_two_files_and_drops_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FsCheckpointStore::new(dir.path()).unwrap();
        for seq in 1..=5 {
            store.save(&checkpoint(seq, 100)).unwrap();
        }
        let leftover = dir.path().join("checkpoint-00000000000000000006.bin.tmp");
        fs::write(&leftover, b"half a checkpoint").unwrap();
        let store = FsCheckpointStore::new(dir.path()).unwrap();
        assert!(!leftover.exists(), "a crashed save's temp file is removed");
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["checkpoint-00000000000000000004.bin", "checkpoint-00000000000000000005.bin"]
        );
        assert_eq!(store.stored_seqs().unwrap(), [4, 5]);
    }

    #[test]
    fn refuses_a_seq_that_is_not_after_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FsCheckpointStore::new(dir.path()).unwrap();
        store.save(&checkpoint(3, 10)).unwrap();
        let err = store.save(&checkpoint(3, 10)).unwrap_err();
        assert!(matches!(err, CheckpointError::SeqNotAfterLatest { seq: 3, latest: 3, .. }));
        assert!(!err.is_retryable());
    }
}
