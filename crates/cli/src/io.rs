//! Reading `FILE|-` arguments (secrets such as card data into wiped buffers only), writing output, and
//! writing files (atomically, never through a symlink, never over an existing file without `--force`).

use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write as _};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{CliError, CliResult};

/// Reads a file, or stdin when `path` is `-`.
pub fn read_input(path: &Path) -> CliResult<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
        Ok(buf)
    } else {
        std::fs::read(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))
    }
}

/// Most bytes a secret input (card data, a shared secret) may have: 1 MiB.
pub const MAX_SECRET_LEN: usize = 1 << 20;

/// Reads a file, or stdin when `path` is `-`, that holds secrets (card data, a shared secret) into one wiped
/// buffer, at most [`MAX_SECRET_LEN`] bytes. Unlike `read_to_end`, whose reallocations leave unwiped copies
/// of what was read so far in freed memory, the buffer grows by hand (see [`read_wiped`]); stdin is read
/// from its file descriptor directly, past the standard library's own (never wiped) stdin buffer.
pub fn read_secret(path: &Path) -> CliResult<Zeroizing<Vec<u8>>> {
    let (name, result) = if path == Path::new("-") {
        let stdin = std::io::stdin()
            .lock()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from);
        (
            "stdin".to_owned(),
            stdin.and_then(|f| read_wiped(f, MAX_SECRET_LEN)),
        )
    } else {
        (
            path.display().to_string(),
            File::open(path).and_then(|f| read_wiped(f, MAX_SECRET_LEN)),
        )
    };
    match result {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(CliError::usage(format!(
            "{name} is larger than {MAX_SECRET_LEN} bytes; that is not card data"
        ))),
        Err(e) => Err(CliError::usage(format!("cannot read {name}: {e}"))),
    }
}

/// Reads all of `reader` into a wiped buffer; `None` when it holds more than `max` bytes. The buffer never
/// reallocates behind our back: when it is full, a buffer twice its size is allocated, the bytes are copied
/// over, and the old one is wiped as it is dropped. Reads go straight into the buffer (no stack copy).
pub fn read_wiped(
    mut reader: impl Read,
    max: usize,
) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    // One byte over `max` tells a too-large input from one of exactly `max` bytes.
    let limit = max.saturating_add(1);
    let mut buf = Zeroizing::new(Vec::with_capacity(limit.min(16 * 1024)));
    let mut len = 0;
    loop {
        if len == buf.capacity() {
            if len >= limit {
                return Ok(None);
            }
            let mut bigger = Zeroizing::new(Vec::with_capacity(len.saturating_mul(2).min(limit)));
            bigger.extend_from_slice(&buf[..len]);
            buf = bigger; // the old buffer is wiped here, as it is dropped
        }
        // The whole capacity as initialised bytes (no reallocation: it is within the capacity); `len` says
        // how much of it is data.
        let capacity = buf.capacity();
        buf.resize(capacity, 0);
        match reader.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok((len <= max).then_some(buf))
}

/// Reads a text file (or stdin), trimmed of surrounding whitespace.
pub fn read_text(path: &Path) -> CliResult<String> {
    let bytes = read_input(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::usage(format!("{} is not UTF-8 text", path.display())))?;
    Ok(text.trim().to_owned())
}

/// Reads all of stdin.
pub fn read_stdin() -> CliResult<Vec<u8>> {
    read_input(Path::new("-"))
}

/// Writes bytes to stdout.
pub fn write_stdout(bytes: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::usage(format!("cannot write stdout: {e}")))
}

/// Writes a line to stdout.
pub fn print_line(s: &str) -> CliResult {
    let mut line = String::with_capacity(s.len() + 1);
    line.push_str(s);
    line.push('\n');
    write_stdout(line.as_bytes())
}

/// Pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) -> CliResult {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::usage(e.to_string()))?;
    print_line(&s)
}

/// Whether `path` is a regular file (not a symlink) holding exactly `contents`: writing them again would
/// change nothing.
pub fn unchanged(path: &Path, contents: &[u8]) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
        && std::fs::read(path).is_ok_and(|existing| existing == contents)
}

/// Refuses when something (a file, a symlink even dangling, a directory) is at `path`, unless `force`
/// (then only a directory is refused). Commands that write several files call this for each before writing
/// any, so that a refusal leaves none written.
pub fn check_writable(path: &Path, force: bool) -> CliResult {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(CliError::usage(format!(
            "{} is a directory; give a file name",
            path.display()
        ))),
        Ok(_) if !force => Err(exists(path)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::usage(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
    }
}

fn exists(path: &Path) -> CliError {
    CliError::usage(format!(
        "{} already exists; refusing to overwrite it (pass --force to replace it)",
        path.display()
    ))
}

/// Writes `contents` to the file `path`, the one way every command writes files:
///
/// - the bytes go to a new temporary file in the same directory (`.NAME.UUID.tmp`, created exclusively with
///   `O_CREAT | O_EXCL`, which never follows a symlink), which is flushed to disk;
/// - without `force` it is then hard-linked to `path`, which fails if anything is there — a file, or a
///   symlink even dangling (whose target is never created); with `force` it is renamed over `path`, which
///   replaces the directory entry itself (a symlink there is replaced, its target never written);
/// - either way the file appears whole or not at all, and the temporary file is gone afterwards, also when
///   a step fails.
///
/// On file systems without hard links, the no-`force` case checks that `path` is free and renames.
pub fn write_file(path: &Path, contents: &[u8], force: bool) -> CliResult {
    let cannot =
        |e: std::io::Error| CliError::usage(format!("cannot write {}: {e}", path.display()));
    let Some(name) = path.file_name() else {
        return Err(CliError::usage(format!(
            "{} is not a file name",
            path.display()
        )));
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_writable(path, force)?;
    let temp = TempFile::create(dir, name).map_err(cannot)?;
    (&temp.file)
        .write_all(contents)
        .and_then(|()| temp.file.sync_all())
        .map_err(cannot)?;
    if force {
        std::fs::rename(&temp.path, path).map_err(cannot)?;
    } else {
        match std::fs::hard_link(&temp.path, path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(exists(path)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::PermissionDenied | ErrorKind::Unsupported
                ) =>
            {
                // No hard links here (FAT, some network file systems): check, then rename.
                check_writable(path, false)?;
                std::fs::rename(&temp.path, path).map_err(cannot)?;
            }
            Err(e) => return Err(cannot(e)),
        }
    }
    drop(temp); // removes the temporary name, if the file is still under it
    // Make the new directory entry durable too (best effort: not every file system can sync a directory).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A temporary file next to the target, removed (by name) when dropped.
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn create(dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<Self> {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        let path = dir.join(temp_name);
        // create_new is O_CREAT | O_EXCL: it fails on any existing name, a symlink included, and never
        // follows one.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self { path, file })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a hard link this removes the temporary (second) name; after a rename, or when the file was
        // never created, the name is gone already (NotFound).
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A reader of `left` bytes of the marker over and over, handed out at most `chunk` bytes a call and
    /// written straight into the caller's buffer (so the only copies are the ones the caller makes).
    struct Markers {
        left: usize,
        chunk: usize,
        at: usize,
    }

    impl Read for Markers {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let marker = freed::marker();
            let n = buf.len().min(self.left).min(self.chunk);
            for b in &mut buf[..n] {
                *b = marker[self.at % marker.len()];
                self.at += 1;
            }
            self.left -= n;
            Ok(n)
        }
    }

    /// Reading 300 KB of "card data" through [`read_wiped`] frees no memory that still holds any of it: the
    /// buffer grew five times, and each old buffer was wiped before it was freed. The control shows the
    /// check sees the copies `read_to_end` leaves (its reallocations free unwiped buffers), as the CLI's
    /// reads did before; and the size cap holds.
    #[test]
    fn secret_reads_leave_no_unwiped_copy_in_freed_memory() {
        let markers = |len| Markers {
            left: len,
            chunk: 4096,
            at: 0,
        };
        let marker = freed::marker();
        let (ok, found) = freed::watch(|| {
            let read = read_wiped(markers(300_000), MAX_SECRET_LEN);
            read.as_ref().is_ok_and(|data| {
                data.as_ref().is_some_and(|d| {
                    d.len() == 300_000 && d.iter().enumerate().all(|(i, b)| *b == marker[i % 16])
                })
            })
        });
        assert!(ok, "read_wiped returned the data");
        assert_eq!(found, 0, "freed buffers held card data");

        // Control: read_to_end into a Vec, wiped at the end, as the CLI used to read card data.
        let (read, found) = freed::watch(|| {
            let mut plain = Vec::new();
            let read = markers(300_000).read_to_end(&mut plain).map(|_| ());
            drop(Zeroizing::new(plain));
            read
        });
        read.unwrap();
        assert!(found > 0, "the check sees the copies read_to_end leaves");

        // The cap: exactly max bytes are fine, one more is refused.
        assert_eq!(
            read_wiped(markers(1000), 1000).unwrap().unwrap().len(),
            1000
        );
        assert!(read_wiped(markers(1001), 1000).unwrap().is_none());
        assert!(read_wiped(markers(0), 1000).unwrap().unwrap().is_empty());
    }

    /// The names in `dir`, sorted: what a write left behind (no `.….tmp`).
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_appears_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_file(&path, b"first\n", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first\n");
        assert_eq!(names(dir.path()), ["out.txt"]);
        // A path with no file name is refused.
        assert!(write_file(Path::new("/"), b"x", true).is_err());
    }

    #[test]
    fn an_existing_file_is_kept_without_force_and_replaced_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, b"precious\n").unwrap();
        let e = write_file(&path, b"new\n", false).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("--force"), "{}", e.message);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious\n");
        assert_eq!(names(dir.path()), ["out.txt"]);
        write_file(&path, b"new\n", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        assert_eq!(names(dir.path()), ["out.txt"]);
    }

    #[test]
    fn a_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        let link = dir.path().join("link.txt");
        // Dangling: refused without --force, and the target is not created.
        symlink(&target, &link).unwrap();
        let e = write_file(&link, b"data\n", false).unwrap_err();
        assert_eq!(e.code, 2, "{}", e.message);
        assert!(
            !target.exists(),
            "the dangling symlink's target was created"
        );
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        // With --force the link itself is replaced by a regular file; the target is still not created.
        write_file(&link, b"data\n", true).unwrap();
        assert!(!target.exists());
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(std::fs::read(&link).unwrap(), b"data\n");
        // A symlink to an existing file: --force replaces the link, the file it pointed at is untouched.
        std::fs::write(&target, b"elsewhere\n").unwrap();
        let link2 = dir.path().join("link2.txt");
        symlink(&target, &link2).unwrap();
        assert!(write_file(&link2, b"data\n", false).is_err());
        write_file(&link2, b"data\n", true).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"elsewhere\n");
        assert_eq!(std::fs::read(&link2).unwrap(), b"data\n");
        assert_eq!(names(dir.path()), ["link.txt", "link2.txt", "target.txt"]);
    }

    #[test]
    fn directories_and_missing_parents_are_errors_that_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        for force in [false, true] {
            let e = write_file(&sub, b"x", force).unwrap_err();
            assert!(e.message.contains("is a directory"), "{}", e.message);
            let e = write_file(&dir.path().join("missing/out.txt"), b"x", force).unwrap_err();
            assert!(e.message.contains("cannot write"), "{}", e.message);
        }
        assert_eq!(names(dir.path()), ["sub"]);
        assert!(names(&sub).is_empty());
    }
}

/// Test support: an allocator that, on a thread that armed it, looks into every block freed for a 16-byte
/// marker. Blocks still holding it were freed unwiped. The marker is random, made at run time: a constant
/// would also sit in the binary's debug information, which other threads read into memory when they take a
/// backtrace. (All unit tests of this binary run on this allocator; unarmed, it only passes calls on.)
#[cfg(test)]
#[allow(unsafe_code)]
mod freed {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static MARKER: OnceLock<[u8; 16]> = OnceLock::new();

    /// What the tests write as secret data: 16 random bytes no other memory of the process holds.
    pub fn marker() -> [u8; 16] {
        *MARKER.get_or_init(|| uuid::Uuid::new_v4().into_bytes())
    }

    thread_local! {
        /// Whether this thread's frees are looked into.
        static ARMED: Cell<bool> = const { Cell::new(false) };
    }

    /// Freed blocks that held the marker, on armed threads.
    pub static FOUND: AtomicUsize = AtomicUsize::new(0);

    /// Looks into the blocks this thread frees while `f` runs; returns what `f` returned and how many of
    /// them held the marker.
    pub fn watch<T>(f: impl FnOnce() -> T) -> (T, usize) {
        marker();
        let before = FOUND.load(Ordering::SeqCst);
        ARMED.with(|a| a.set(true));
        let out = f();
        ARMED.with(|a| a.set(false));
        (out, FOUND.load(Ordering::SeqCst) - before)
    }

    struct Checking;

    // SAFETY: every call is passed to the system allocator unchanged; `dealloc` only reads the block it is
    // handed, which is valid for `layout.size()` bytes until it is freed. `realloc` is not overridden, so a
    // reallocation is an allocation, a copy and a `dealloc` of the old block, which is looked into. The
    // thread-local flag is const-initialised without a destructor: reading it never allocates.
    unsafe impl GlobalAlloc for Checking {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as the caller's contract.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let armed = ARMED.try_with(Cell::get).unwrap_or(false);
            // Never initialise the marker here (that would allocate inside the allocator).
            if let Some(marker) = MARKER.get().filter(|m| armed && layout.size() >= m.len()) {
                // SAFETY: i < layout.size(): inside the block. Volatile, because the bytes may never have
                // been written (spare capacity); any value they have is fine here.
                let byte = |i: usize| unsafe { std::ptr::read_volatile(ptr.add(i)) };
                let held = (0..=layout.size() - marker.len())
                    .any(|i| (0..marker.len()).all(|j| byte(i + j) == marker[j]));
                if held {
                    FOUND.fetch_add(1, Ordering::Relaxed);
                }
            }
            // SAFETY: as the caller's contract.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Checking = Checking;
}
