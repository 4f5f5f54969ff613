//! Item 14 of issue 12 (the `env` backend): loading a key from an environment variable leaves no unwiped copy
//! of the key in memory given back to the allocator. This test binary installs a global allocator that, while
//! armed, looks into every block freed (including the old block of every reallocation) for pieces of the
//! key: base64 text as it exists only once the whitespace is removed, and DER bytes of the private key.
//! Buffers wiped on drop (`Zeroizing`) hold zeros by then; a buffer that a `String` or `Vec` outgrew does not.
//!
//! The only test of its binary: the allocator is process-wide.

#![cfg(feature = "env")]
#![allow(unsafe_code)] // a global allocator, and setting an environment variable

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine as _;
use key_provider::{KeyRef, KeySpec, OpenOptions};

/// Whether freed blocks are searched now.
static ARMED: AtomicBool = AtomicBool::new(false);
/// How many freed blocks held a needle.
static FOUND: AtomicUsize = AtomicUsize::new(0);
/// The pieces of the key searched for: set before arming, never freed.
static NEEDLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
/// A piece of the key file's text (the file backend's row).
static FILE_NEEDLE: OnceLock<Vec<u8>> = OnceLock::new();

/// Whether the `len` bytes at `ptr` contain `needle`. Allocates nothing.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes.
unsafe fn holds(ptr: *const u8, len: usize, needle: &[u8]) -> bool {
    if needle.is_empty() || len < needle.len() {
        return false;
    }
    (0..=len - needle.len()).any(|start| {
        needle.iter().enumerate().all(|(i, b)| {
            // SAFETY: start + i < len. Volatile: bytes never written (spare capacity) are read as whatever
            // they hold, as a memory scanner would, without the compiler assuming anything about them.
            unsafe { std::ptr::read_volatile(ptr.add(start + i)) == *b }
        })
    })
}

struct Scanning;

// SAFETY: every call is passed on to the system allocator unchanged; `dealloc` only reads the block it is
// about to free, and allocates nothing itself.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::SeqCst) {
            let mut needles = NEEDLES.get().into_iter().flatten().chain(FILE_NEEDLE.get());
            // SAFETY: the block is `layout.size()` bytes and ours until System.dealloc below.
            if needles.any(|n| unsafe { holds(ptr, layout.size(), n) }) {
                FOUND.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    // `realloc` is GlobalAlloc's default: alloc, copy, then `dealloc` of the old block (searched above).
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

/// Base64 in lines of `width` characters, as a PEM body or a MIME-wrapped secret would be.
fn wrapped(b64: &str, width: usize) -> String {
    b64.as_bytes()
        .chunks(width)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn env_keys_leave_no_unwiped_copies_in_freed_memory() {
    let der = key_provider::software::generate_pkcs8(KeySpec::Rsa(2048)).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_slice());
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        wrapped(&b64, 64)
    );
    // 40 characters across the line break after character 128: present in memory only where the
    // whitespace was removed. And 32 bytes from the middle of the DER (inside the private key).
    let middle = der.len() / 2;
    NEEDLES
        .set(vec![
            b64.as_bytes()[108..148].to_vec(),
            der[middle..middle + 32].to_vec(),
        ])
        .unwrap();
    let rows = [
        ("base64 DER in 64-character lines", wrapped(&b64, 64)),
        (
            "base64 DER in 76-character lines, CRLF",
            wrapped(&b64, 76).replace('\n', "\r\n"),
        ),
        (
            "base64 DER with spaces",
            wrapped(&b64, 16).replace('\n', " "),
        ),
        ("PEM", pem),
    ];
    let key_ref: KeyRef = "env:KEYBOUND_TEST_SECRET_BUFFERS_KEY".parse().unwrap();
    let mut public = None;
    for (name, value) in rows {
        // SAFETY: this binary has one test, and nothing else reads the environment meanwhile.
        unsafe { std::env::set_var("KEYBOUND_TEST_SECRET_BUFFERS_KEY", &value) };
        drop(value);
        FOUND.store(0, Ordering::SeqCst);
        ARMED.store(true, Ordering::SeqCst);
        let key = key_provider::open(&key_ref, &OpenOptions::new());
        ARMED.store(false, Ordering::SeqCst);
        let key = key.unwrap_or_else(|e| panic!("{name}: {e}"));
        let found = FOUND.load(Ordering::SeqCst);
        assert_eq!(
            found, 0,
            "{name}: {found} freed blocks still held pieces of the key"
        );
        // The same key every time (the rows are not vacuous).
        let this = key.public_key().clone();
        assert_eq!(public.get_or_insert_with(|| this.clone()), &this, "{name}");
    }
    #[cfg(feature = "file")]
    file_keys_leave_no_unwiped_copies();
}

/// The file backend reads into one buffer of the file's size, too.
#[cfg(feature = "file")]
fn file_keys_leave_no_unwiped_copies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    key_provider::file::generate(&path, KeySpec::Ec(key_provider::EcCurve::P256)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(body.len() > 100, "{body}");
    FOUND.store(0, Ordering::SeqCst);
    let file_key: KeyRef = format!("file:{}", path.display()).parse().unwrap();
    let needle = text.as_bytes()[30..90].to_vec();
    drop((text, body));
    // The needles are fixed once set; search for the file's text through a second, scoped run.
    assert_eq!(FILE_NEEDLE.set(needle), Ok(()));
    ARMED.store(true, Ordering::SeqCst);
    let key = key_provider::open(&file_key, &OpenOptions::new());
    ARMED.store(false, Ordering::SeqCst);
    key.unwrap();
    assert_eq!(
        FOUND.load(Ordering::SeqCst),
        0,
        "file: freed blocks held the key file's text"
    );
}
