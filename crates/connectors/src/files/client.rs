//! The folder: the connector value, listing an entity's files, fingerprints, atomic writes.
//!
//! For the `files` connector the file system plays the part an HTTP client plays for the
//! others; everything that touches it outside of streaming rows lives here.

use crate::ConnectorError;
use crate::files::config::{FilesConfig, Settings};
use crate::files::source::SeenKeys;
use erpsync_model::EntityKind;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How much of a file's start and end goes into its fingerprint.
const FINGERPRINT_EDGE_BYTES: u64 = 4096;

/// Largest PDF a document row may embed from the folder.
pub(crate) const MAX_PDF_BYTES: u64 = 32 * 1024 * 1024;

/// A `files` system: reads and writes CSV or JSON Lines files in one folder.
///
/// Cheap to clone; clones share the in-memory duplicate detection state.
#[derive(Clone)]
pub struct FilesConnector {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub system: String,
    pub settings: Settings,
    /// Keys seen in the files being streamed, so that a key repeated further down a file is
    /// reported as a duplicate even across pages. Bounded: see [`SeenKeys`].
    pub seen: Mutex<Vec<SeenKeys>>,
}

impl std::fmt::Debug for FilesConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesConnector")
            .field("system", &self.inner.system)
            .field("folder", &self.inner.settings.folder)
            .finish()
    }
}

impl FilesConnector {
    /// Builds the connector from a configuration; fails with every configuration problem.
    /// Does not touch the folder: a missing folder shows when reading or writing.
    pub fn new(system: &str, config: FilesConfig) -> Result<Self, ConnectorError> {
        let settings = config.settings().map_err(|problems| {
            let text: Vec<String> = problems.iter().map(|(field, message)| format!("{field}: {message}")).collect();
            ConnectorError::new(
                crate::ErrorKind::InvalidRequest,
                format!("configuring files \"{system}\""),
                text.join("; "),
            )
        })?;
        Ok(Self { inner: Arc::new(Inner { system: system.to_string(), settings, seen: Mutex::new(Vec::new()) }) })
    }

    pub(crate) fn read_context(&self, entity: EntityKind) -> String {
        format!("reading {entity} from files \"{}\"", self.inner.system)
    }

    pub(crate) fn write_context(&self, entity: EntityKind) -> String {
        format!("writing {entity} to files \"{}\"", self.inner.system)
    }
}

/// What the connector can do with any entity: read (incrementally, by a ledger of files) and
/// write. Files cannot be searched, deleted from or subscribed to.
pub(crate) fn capabilities() -> crate::Capabilities {
    crate::Capabilities {
        read: true,
        incremental_read: true,
        write: true,
        delete: false,
        webhook: false,
        lookup: false,
    }
}

/// A file of the folder that belongs to an entity.
#[derive(Debug, Clone)]
pub(crate) struct FileEntry {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

impl FileEntry {
    fn modified_nanos(&self) -> u128 {
        self.modified.duration_since(UNIX_EPOCH).map(|since| since.as_nanos()).unwrap_or(0)
    }

    /// The part of the fingerprint that costs no read: `<size>-<mtime ns>-`.
    pub fn quick_fingerprint(&self) -> String {
        format!("{}-{}-", self.size, self.modified_nanos())
    }

    /// `<size>-<mtime ns>-<16 hex digits of SHA-256 over the first and last 4 KiB>`.
    ///
    /// Size and modification time catch nearly every change and cost nothing; the hash of
    /// both ends catches a file replaced by another of the same size with its time preserved
    /// (`cp -p`, `rsync -t`), at the price of two small reads.
    pub fn fingerprint(&self) -> io::Result<String> {
        let mut file = File::open(&self.path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; FINGERPRINT_EDGE_BYTES as usize];
        let head = read_up_to(&mut file, &mut buffer)?;
        hasher.update(&buffer[..head]);
        if self.size > FINGERPRINT_EDGE_BYTES {
            let tail_start = self.size.saturating_sub(FINGERPRINT_EDGE_BYTES).max(FINGERPRINT_EDGE_BYTES);
            file.seek(SeekFrom::Start(tail_start))?;
            let tail = read_up_to(&mut file, &mut buffer)?;
            hasher.update(&buffer[..tail]);
        }
        let digest = hasher.finalize();
        Ok(format!("{}{}", self.quick_fingerprint(), hex::encode(&digest[..8])))
    }

    pub fn is_younger_than(&self, min_age: std::time::Duration, now: SystemTime) -> bool {
        !min_age.is_zero() && now.duration_since(self.modified).map(|age| age < min_age).unwrap_or(true)
    }
}

fn read_up_to(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The entity's files in the folder, sorted by name. Names that are not UTF-8 are skipped:
/// they could not be stored in a cursor or shown in a dead letter.
pub(crate) fn list_files(settings: &Settings, entity: EntityKind) -> io::Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    for dir_entry in fs::read_dir(&settings.folder)? {
        let dir_entry = dir_entry?;
        let Ok(name) = dir_entry.file_name().into_string() else { continue };
        if !settings.matches(entity, &name) {
            continue;
        }
        let metadata = match dir_entry.metadata() {
            Ok(metadata) => metadata,
            // Removed between listing and looking: it is simply not there.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if !metadata.is_file() {
            continue;
        }
        files.push(FileEntry {
            path: dir_entry.path(),
            name,
            size: metadata.len(),
            modified: metadata.modified().unwrap_or(UNIX_EPOCH),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Reads a file named in a row (a document's PDF). Only plain names inside the folder.
pub(crate) fn read_attachment(folder: &Path, name: &str) -> Result<Vec<u8>, String> {
    if name.contains(['/', '\\']) || name.starts_with('.') || name.contains('\0') {
        return Err(format!("{name:?} is not a plain file name in the folder"));
    }
    let path = folder.join(name);
    let file = File::open(&path).map_err(|error| format!("cannot read {name:?}: {}", lowercase_io(&error)))?;
    let mut bytes = Vec::new();
    file.take(MAX_PDF_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {name:?}: {}", lowercase_io(&error)))?;
    if bytes.len() as u64 > MAX_PDF_BYTES {
        return Err(format!("{name:?} is larger than {} MiB", MAX_PDF_BYTES / 1024 / 1024));
    }
    Ok(bytes)
}

/// Writes a file so that readers see either nothing or all of it: a hidden temporary file in
/// the same folder, flushed to disk, renamed over the final name, then the folder itself
/// flushed so the rename survives a crash. Writing the same name again replaces the file,
/// which makes a replayed batch idempotent.
pub(crate) fn write_atomically(
    folder: &Path,
    file_name: &str,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temporary =
        folder.join(format!(".{file_name}.{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temporary)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, folder.join(file_name))?;
        sync_folder(folder)
    })();
    if result.is_err() {
        // Best effort: the temporary file is hidden and never read, but should not pile up.
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Removes temporary files that a killed write left behind: those for one of `targets` (the
/// batch being written again after a crash) written by another process, and those of any
/// process that no longer runs (Linux, where `/proc` tells). A temporary file of a live
/// process writing another file is never touched. Best effort: a file that cannot be removed
/// is hidden and never read, so it harms nobody.
pub(crate) fn remove_stale_temporaries(folder: &Path, targets: &[&str]) {
    let Ok(entries) = fs::read_dir(folder) else { return };
    let own_pid = std::process::id();
    let proc_available = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        let Some((target, pid)) = parse_temporary_name(&name) else { continue };
        let for_target = targets.contains(&target) && pid != own_pid;
        let process_gone = proc_available && pid != own_pid && !Path::new("/proc").join(pid.to_string()).exists();
        if for_target || process_gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// `.<target>.<pid>-<counter>.tmp` → (target, pid).
fn parse_temporary_name(name: &str) -> Option<(&str, u32)> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (target, suffix) = inner.rsplit_once('.')?;
    let (pid, counter) = suffix.split_once('-')?;
    counter.parse::<u64>().ok()?;
    Some((target, pid.parse().ok()?))
}

#[cfg(unix)]
fn sync_folder(folder: &Path) -> io::Result<()> {
    File::open(folder)?.sync_all()
}

#[cfg(not(unix))]
fn sync_folder(_folder: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file; NTFS journals the rename itself.
    Ok(())
}

/// `io::Error` texts start with a capital on some platforms; messages here are lowercase.
pub(crate) fn lowercase_io(error: &io::Error) -> String {
    let text = error.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// A file reader that refuses to read more than `limit` bytes past a mark.
///
/// The CSV parser reads a quoted field until its closing quote: one unclosed quote would make
/// it read the rest of a 1 GB file into one row. The source moves the mark to the start of
/// every row, so a row longer than the limit fails instead and memory stays bounded.
pub(crate) struct BoundedReader {
    file: File,
    position: u64,
    limit: u64,
    pub tripped: bool,
}

impl BoundedReader {
    pub fn new(file: File) -> Self {
        Self { file, position: 0, limit: u64::MAX, tripped: false }
    }

    /// Allows reading up to `allowance` bytes past `mark`.
    pub fn set_limit(&mut self, mark: u64, allowance: u64) {
        self.limit = mark.saturating_add(allowance);
    }
}

impl Read for BoundedReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if buffer.is_empty() {
            return Ok(0);
        }
        if self.position >= self.limit {
            self.tripped = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, "row too long"));
        }
        let allowed = (self.limit - self.position).min(buffer.len() as u64) as usize;
        let n = self.file.read(&mut buffer[..allowed])?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for BoundedReader {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        self.position = self.file.seek(position)?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_content_of_the_same_size_and_time() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("a.csv");
        fs::write(&path, vec![b'a'; 10_000]).unwrap();
        let modified = fs::metadata(&path).unwrap().modified().unwrap();
        let entry = FileEntry { name: "a.csv".into(), path: path.clone(), size: 10_000, modified };
        let before = entry.fingerprint().unwrap();
        assert!(before.starts_with(&entry.quick_fingerprint()));
        let mut bytes = vec![b'a'; 10_000];
        bytes[9_999] = b'b';
        fs::write(&path, bytes).unwrap();
        assert_ne!(entry.fingerprint().unwrap(), before);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let folder = tempfile::tempdir().unwrap();
        write_atomically(folder.path(), "x.csv", |file| file.write_all(b"one")).unwrap();
        write_atomically(folder.path(), "x.csv", |file| file.write_all(b"two")).unwrap();
        let failed = write_atomically(folder.path(), "y.csv", |_| Err(io::Error::other("disk full")));
        assert!(failed.is_err());
        let names: Vec<String> = fs::read_dir(folder.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["x.csv".to_string()]);
        assert_eq!(fs::read(folder.path().join("x.csv")).unwrap(), b"two");
    }

    #[test]
    fn stale_temporary_files_are_removed_but_not_those_of_live_writers() {
        let folder = tempfile::tempdir().unwrap();
        let own = std::process::id();
        let names = [
            format!(".product-b1.csv.{own}-3.tmp"),      // ours, in progress: kept
            ".product-b1.csv.4000000-0.tmp".to_string(), // the same batch, a crashed process: removed
            format!(".product-b2.csv.{}-0.tmp", own),    // ours, another file: kept
            ".product-b9.csv.4000001-2.tmp".to_string(), // a process that is gone: removed
            ".hidden-by-someone-else".to_string(),       // not ours: kept
        ];
        for name in &names {
            fs::write(folder.path().join(name), b"x").unwrap();
        }
        remove_stale_temporaries(folder.path(), &["product-b1.csv"]);
        let mut left: Vec<String> = fs::read_dir(folder.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![names[0].clone(), names[2].clone(), names[4].clone()];
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(parse_temporary_name(".a.b.csv.12-3.tmp"), Some(("a.b.csv", 12)));
    }

    #[test]
    fn attachments_must_be_plain_names() {
        let folder = tempfile::tempdir().unwrap();
        assert!(read_attachment(folder.path(), "../etc/passwd").unwrap_err().contains("plain file name"));
        assert!(read_attachment(folder.path(), "missing.pdf").unwrap_err().starts_with("cannot read \"missing.pdf\""));
    }
}
