//! The tuning database: measured GFLOPS per (shape, kernel) for one device, as JSON.
//!
//! One file per device, named after its key (backend/api/name/driver). Files are read from the
//! shipped `models/` folder and from the user's cache (`$TILEGEMM_CACHE`, else
//! `$XDG_CACHE_HOME/tilegemm`, else `~/.cache/tilegemm`), and written atomically (a temporary file,
//! then a rename). A corrupt or incompatible file is reported and ignored, never fatal; `save` moves
//! such a file aside (`*.corrupt`) rather than silently replacing it.

use crate::bench::Measurement;
use crate::device::{BackendKind, DeviceInfo};
use crate::error::{Error, Result};
use crate::kernel::{find, KernelSpec};
use crate::problem::Shape;
use crate::telemetry::median;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Marks a file as ours, and the layout version it follows.
const FORMAT: &str = "tilegemm-tuning-db";
const VERSION: u32 = 1;

/// One measurement of one kernel at one shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Rows of C (M) of the measured shape.
    pub m: usize,
    /// Columns of C (N) of the measured shape.
    pub n: usize,
    /// Depth (K) of the measured shape.
    pub k: usize,
    /// The measured kernel's catalogue name.
    pub kernel: String,
    /// GFLOPS of the kernel alone (device clock where available).
    pub gflops: f64,
    /// GFLOPS of the whole host-slice call, copies included: what a caller of `Engine::gemm` sees.
    pub e2e_gflops: f64,
    /// [`KernelSpec::fingerprint`] of the kernel measured (its parameters and revision); absent for
    /// the CPU's kernel and in rows written before fingerprints (revision 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_fingerprint: Option<u64>,
}

impl Row {
    /// A measurement of `kernel` at `shape`, stamped with the kernel's fingerprint.
    pub fn new(shape: Shape, kernel: &str, gflops: f64, e2e_gflops: f64) -> Self {
        Row {
            m: shape.m,
            n: shape.n,
            k: shape.k,
            kernel: kernel.to_string(),
            gflops,
            e2e_gflops,
            kernel_fingerprint: find(kernel).map(KernelSpec::fingerprint),
        }
    }

    /// Whether the row was measured with the catalogue's kernel of its name as it is now.
    pub fn is_current(&self) -> bool {
        self.kernel_fingerprint
            .is_none_or(|f| find(&self.kernel).is_some_and(|spec| spec.fingerprint() == f))
    }
}

/// Every measurement of one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuningDb {
    /// Always `tilegemm-tuning-db`: marks the file as a tuning database.
    pub format: String,
    /// Layout version of the file (this build reads 1).
    pub version: u32,
    /// The measured device's key (`backend/api/name/driver`); the file is named after it.
    pub device_key: String,
    /// The backend the device was opened through.
    pub backend: BackendKind,
    /// The API underneath the backend (`vulkan`, `metal`, `dx12`, `opencl`, `native`).
    pub api: String,
    /// The device's name, as its API reports it.
    pub device: String,
    /// Driver name and version.
    pub driver: String,
    /// The measurements, at most one per (shape, kernel).
    pub rows: Vec<Row>,
}

impl TuningDb {
    /// An empty database for `info`'s device.
    pub fn new(info: &DeviceInfo) -> Self {
        TuningDb {
            format: FORMAT.to_string(),
            version: VERSION,
            device_key: info.key.clone(),
            backend: info.backend,
            api: info.api.clone(),
            device: info.name.clone(),
            driver: info.driver.clone(),
            rows: Vec::new(),
        }
    }

    /// Adds a measurement, replacing an earlier one of the same shape and kernel.
    pub fn record(&mut self, m: &Measurement) {
        self.record_row(Row::new(
            Shape::new(m.m, m.n, m.k),
            &m.kernel,
            m.gflops,
            m.e2e_gflops,
        ));
    }

    /// Drops the rows of kernels that changed since they were measured; how many were dropped.
    pub fn drop_changed_kernels(&mut self) -> usize {
        let before = self.rows.len();
        self.rows.retain(Row::is_current);
        before - self.rows.len()
    }

    /// Adds `row`, replacing an earlier one of the same shape and kernel.
    pub fn record_row(&mut self, row: Row) {
        self.rows
            .retain(|r| !((r.m, r.n, r.k) == (row.m, row.n, row.k) && r.kernel == row.kernel));
        self.rows.push(row);
    }

    /// Adds `rows` to the database of `info`'s device in `dir` (created if missing), under a lock
    /// file, so processes appending at once lose nothing; the file is replaced atomically. A
    /// database there that does not load is kept aside, as by [`TuningDb::save`].
    pub fn append(dir: &Path, info: &DeviceInfo, rows: Vec<Row>) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, "creating the folder", e))?;
        let _lock = FileLock::acquire(&dir.join(format!(".{}.lock", Self::file_name(&info.key))))?;
        let mut db = match Self::load(dir, &info.key) {
            Ok(Some(db)) => db,
            Ok(None) | Err(_) => TuningDb::new(info),
        };
        for row in rows {
            db.record_row(row);
        }
        db.save(dir)
    }

    /// The measurement of `kernel` at exactly `shape`, if any.
    pub fn lookup(&self, shape: Shape, kernel: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| (r.m, r.n, r.k) == (shape.m, shape.n, shape.k) && r.kernel == kernel)
    }

    /// End-to-end GFLOPS of `kernel` at `shape` with the copy time settled across the device's
    /// kernels: every kernel of a device moves the same bytes at a shape, so its end-to-end time is
    /// the shared copy time plus its own kernel time. The copy time is the median, over the
    /// kernels measured at `shape`, of end-to-end minus kernel seconds; a single end-to-end time
    /// carries the copy's noise (±5% on a GPU, more than most kernels differ by), the median does
    /// not. Where the device cannot time kernels alone (the CPU), kernel and end-to-end agree and
    /// this is the measured value.
    pub fn e2e_estimate(&self, shape: Shape, kernel: &str) -> Option<f64> {
        let row = self.lookup(shape, kernel)?;
        let flops = 2.0 * shape.m as f64 * shape.n as f64 * shape.k as f64;
        let seconds = |gflops: f64| flops / (gflops * 1e9);
        let mut copies: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| (r.m, r.n, r.k) == (shape.m, shape.n, shape.k))
            .map(|r| (seconds(r.e2e_gflops) - seconds(r.gflops)).max(0.0))
            .collect();
        let copy = median(&mut copies);
        Some(flops / (copy + seconds(row.gflops)) / 1e9)
    }

    /// The file name of a device key's database: `<file stem>.tuning.json`.
    pub fn file_name(device_key: &str) -> String {
        format!("{}.tuning.json", Self::file_stem(device_key))
    }

    /// A device key made safe for file names, which every file of the device starts with: every
    /// character outside `[A-Za-z0-9._-]` becomes `_`.
    pub fn file_stem(device_key: &str) -> String {
        device_key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Reads the database of `device_key` from `dir`: `Ok(None)` when there is no file, an error
    /// when the file is unreadable, not ours, of another version or for another device.
    pub fn load(dir: &Path, device_key: &str) -> Result<Option<Self>> {
        Self::load_from(&DataSource::Folder(dir.to_path_buf()), device_key)
    }

    /// As [`TuningDb::load`], from any data source.
    pub fn load_from(source: &DataSource, device_key: &str) -> Result<Option<Self>> {
        let name = Self::file_name(device_key);
        let Some(text) = source.read(&name)? else {
            return Ok(None);
        };
        let path = source.path(&name);
        let db = Self::parse(&path, &text)?;
        if db.device_key != device_key {
            return Err(Error::file(
                &path,
                format!("holds measurements of '{}'", db.device_key),
                None,
            ));
        }
        Ok(Some(db))
    }

    /// The database of `info`'s device in `source`: its own, else, for a GPU, one of the same
    /// device (backend, API, name) under another driver (rows of a driver update still describe
    /// the device better than nothing). A CPU's rows hold only for its thread count: 16 threads'
    /// rows would make a 2-core host's CPU look 8× faster than it is. `Ok(None)` when there is none.
    pub fn load_for(source: &DataSource, info: &DeviceInfo) -> Result<Option<Self>> {
        if let Some(own) = Self::load_from(source, &info.key)? {
            return Ok(Some(own));
        }
        if info.backend == BackendKind::Cpu {
            return Ok(None);
        }
        // File names begin with the key's `backend/api/name/` part, made safe the same way.
        let class = format!("{}/{}/{}/", info.backend, info.api, info.name);
        let prefix = Self::file_stem(&class);
        let mut names: Vec<String> = source
            .names()
            .into_iter()
            .filter(|name| name.starts_with(&prefix) && name.ends_with(".tuning.json"))
            .collect();
        names.sort();
        for name in names {
            let Some(text) = source.read(&name)? else {
                continue;
            };
            let db = Self::parse(&source.path(&name), &text)?;
            if (db.backend, db.api.as_str(), db.device.as_str())
                == (info.backend, info.api.as_str(), info.name.as_str())
            {
                return Ok(Some(db));
            }
        }
        Ok(None)
    }

    /// Reads and checks one database file (format, version), whatever device it is for.
    pub fn read_file(path: &Path) -> Result<Self> {
        let text = read_capped(path)?.ok_or_else(|| {
            Error::file(
                path,
                "reading",
                Some(Box::new(std::io::Error::from(std::io::ErrorKind::NotFound))),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks the text of a database file (format, version).
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self> {
        let db: TuningDb = serde_json::from_str(text)
            .map_err(|e| file_error(path, format!("not a tuning database: {e}"), e))?;
        if db.format != FORMAT || db.version != VERSION {
            return Err(Error::file(
                path,
                format!(
                    "format {} version {} (this tilegemm reads {FORMAT} version {VERSION})",
                    db.format, db.version
                ),
                None,
            ));
        }
        Ok(db)
    }

    /// Writes the database into `dir` atomically and returns the file's path. An existing file that
    /// does not load is kept as `<name>.corrupt` (`.corrupt.1`, … when that is taken) and reported.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, "creating the folder", e))?;
        let path = dir.join(Self::file_name(&self.device_key));
        if path.exists() {
            if let Err(e) = Self::load(dir, &self.device_key) {
                let aside = (0..)
                    .map(|i| match i {
                        0 => path.with_extension("json.corrupt"),
                        i => path.with_extension(format!("json.corrupt.{i}")),
                    })
                    .find(|aside| !aside.exists())
                    .expect("a free name");
                log::warn!("{e}; keeping it as {}", aside.display());
                std::fs::rename(&path, &aside).map_err(|e| file_error(&path, "moving aside", e))?;
            }
        }
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::file(&path, "serialising", Some(Box::new(e))))?;
        write_atomically(&path, &text)?;
        Ok(path)
    }
}

/// A lock held while its file exists: created exclusively, removed on drop. A lock older than
/// [`STALE_LOCK`] is taken to be left by a process that died, and broken.
struct FileLock {
    path: PathBuf,
}

/// How old a lock file must be to be broken.
const STALE_LOCK: std::time::Duration = std::time::Duration::from_secs(30);

impl FileLock {
    fn acquire(path: &Path) -> Result<Self> {
        let started = std::time::Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(_) => {
                    return Ok(FileLock {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|age| age > STALE_LOCK) {
                        let _ = std::fs::remove_file(path);
                    } else if started.elapsed() > 2 * STALE_LOCK {
                        return Err(file_error(path, "waiting for the lock", e));
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
                Err(e) => return Err(file_error(path, "taking the lock", e)),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An [`Error::File`] with the io or JSON error underneath.
fn file_error(
    path: &Path,
    message: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::file(path, message, Some(Box::new(source)))
}

/// Replaces `path` with `text` so that readers see the old file or the new one, never a torn one:
/// the text goes to a temporary file created exclusively in the same folder (never through a
/// link planted under its name), which is then renamed over `path`.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(file_error(&temporary, "writing", e));
    }
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        file_error(path, "replacing", e)
    })
}

/// The largest data file read (the shipped ones are a few MB): a larger one is reported and
/// ignored without being read into memory.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The text of the file at `path`; `Ok(None)` when there is none; an error when it cannot be read
/// or is over [`MAX_FILE_BYTES`].
pub(crate) fn read_capped(path: &Path) -> Result<Option<String>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, "reading", e)),
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return Err(Error::file(
                path,
                format!(
                    "{} bytes, over the {MAX_FILE_BYTES}-byte cap of a data file",
                    meta.len()
                ),
                None,
            ))
        }
        Ok(_) => {}
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(path, "reading", e)),
    }
}

/// The user cache, where `tune` writes, the selector reads and on-line tuning records:
/// `$TILEGEMM_CACHE`, else `$XDG_CACHE_HOME/tilegemm`, else `$HOME/.cache/tilegemm`. None when none of
/// them is set: tilegemm then keeps nothing between runs rather than fall back to a folder every
/// user of the host can write (a shared temporary folder).
pub fn user_dir() -> Option<PathBuf> {
    let set = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set("TILEGEMM_CACHE")
        .or_else(|| set("XDG_CACHE_HOME").map(|dir| dir.join("tilegemm")))
        .or_else(|| set("HOME").map(|home| home.join(".cache").join("tilegemm")))
}

/// Where tuning data is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// The data shipped inside the binary ([`super::shipped`], built from `models/`).
    Shipped,
    /// A folder: the user cache, or one given.
    Folder(PathBuf),
}

impl DataSource {
    /// The text of the file `name`; `Ok(None)` when there is no such file.
    pub fn read(&self, name: &str) -> Result<Option<String>> {
        match self {
            DataSource::Shipped => Ok(super::shipped::read(name).map(str::to_string)),
            DataSource::Folder(dir) => read_capped(&dir.join(name)),
        }
    }

    /// The names of every file.
    pub fn names(&self) -> Vec<String> {
        match self {
            DataSource::Shipped => super::shipped::files()
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
            DataSource::Folder(dir) => std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// How the file `name` of this source is named in messages.
    pub fn path(&self, name: &str) -> PathBuf {
        match self {
            DataSource::Shipped => Path::new("<shipped>").join(name),
            DataSource::Folder(dir) => dir.join(name),
        }
    }
}
