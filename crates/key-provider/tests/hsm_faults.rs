//! HSM faults against SoftHSM, each with its own documented error (docs/hsm.md, "Errors you may meet"):
//! wrong PIN, PIN file missing, PIN file readable by others, token absent, key absent, two keys under one
//! label, a module path that is not a PKCS#11 library (or not there at all), or not allowed; and sessions
//! closed under load: 4 threads signing while a fifth calls `C_CloseAllSessions` 40 times, with zero failed
//! signatures and at least 40 operations that reconnected and retried once.
//!
//! The module-path faults need no token and always run; the others are skipped with a loud message unless
//! `cargo xtask softhsm-test` set up SoftHSM.

#![cfg(feature = "pkcs11")]

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptoki::object::{Attribute, ObjectClass};
use key_provider::{EcCurve, KeyBackend, KeyError, KeyRef, KeySpec, OpenOptions, SignatureScheme};
use keybound_test_support::pkcs11::{self as testing, TestToken};

fn write_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// `reference` with its `module-path=` or `pin-source=` value replaced.
fn replace_query(reference: &str, attr: &str, value: &str) -> KeyRef {
    let (base, query) = reference.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with(&format!("{attr}=")) {
                format!("{attr}={value}")
            } else {
                kv.to_owned()
            }
        })
        .collect();
    format!("{base}?{}", query.join("&")).parse().unwrap()
}

fn open(reference: &KeyRef) -> Result<Arc<dyn KeyBackend>, KeyError> {
    key_provider::open(reference, &OpenOptions::new())
}

/// The variant of a [`KeyError`], and for `NotFound`/`Ambiguous` what was looked for.
fn variant(e: &KeyError) -> String {
    match e {
        KeyError::LoginFailed { .. } => "LoginFailed".into(),
        KeyError::PinUnavailable { .. } => "PinUnavailable".into(),
        KeyError::InsecurePinFile { .. } => "InsecurePinFile".into(),
        KeyError::NotFound { what, .. } => format!("NotFound({what})"),
        KeyError::Ambiguous { what, .. } => format!("Ambiguous({what})"),
        KeyError::ModuleUnavailable { .. } => "ModuleUnavailable".into(),
        KeyError::ModuleNotAllowed { .. } => "ModuleNotAllowed".into(),
        other => format!("other: {other:?}"),
    }
}

/// A real shared library that is not a PKCS#11 module.
fn some_other_library() -> Option<PathBuf> {
    [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/aarch64-linux-gnu/libz.so.1",
        "/usr/lib/aarch64-linux-gnu/libz.so.1",
        "/lib64/libz.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

#[test]
fn a_module_path_that_is_not_a_pkcs11_library_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let pin = write_file(dir.path(), "user.pin", "123456\n", 0o600);
    let text = write_file(
        dir.path(),
        "libvendor.so",
        "#!/bin/sh\necho not a library\n",
        0o755,
    );
    let reference = |module: &Path| -> KeyRef {
        format!(
            "pkcs11:token=t;object=k?module-path={}&pin-source=file:{}",
            module.display(),
            pin.display()
        )
        .parse()
        .unwrap()
    };
    let mut modules = vec![(text.clone(), "not a PKCS#11 library")];
    if let Some(lib) = some_other_library() {
        modules.push((lib, "not a PKCS#11 library"));
    }
    modules.push((dir.path().join("missing.so"), "not found"));
    // Allowed explicitly: these are the modules that get as far as being loaded (see the next test).
    let allowing =
        OpenOptions::new().pkcs11_allowed_modules(modules.iter().map(|(m, _)| m.clone()));
    for (module, says) in modules {
        let err = key_provider::open(&reference(&module), &allowing)
            .map(|_| ())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, KeyError::ModuleUnavailable { .. }),
            "{}: {err:?}",
            module.display()
        );
        assert!(text.contains(says), "{}: {text}", module.display());
        assert!(text.contains("PKCS#11 module"), "{text}");
        assert!(!text.contains("123456"), "{text}");
    }
}

/// A shared library whose constructor (run by the dynamic loader when the library is loaded, before any
/// PKCS#11 call) creates the file `marker`: the proof that a library was loaded. `None` without a C compiler.
fn library_with_constructor(dir: &Path, marker: &Path) -> Option<PathBuf> {
    let source = dir.join("marker.c");
    std::fs::write(
        &source,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void loaded(void) {{\n\
             int fd = open(\"{}\", O_WRONLY | O_CREAT, 0600);\n if (fd >= 0) close(fd);\n}}\n",
            marker.display()
        ),
    )
    .unwrap();
    let library = dir.join("libmarker.so");
    match std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
    {
        Ok(status) if status.success() => Some(library),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "*** SKIPPED the constructor check: no working `cc` to build a test library ***"
            );
            None
        }
    }
}

/// Item 6 of issue 12: `module-path=` used to load whatever library it named (its constructors run at once,
/// whatever keybound thinks of the library afterwards). A module that is neither the configured one nor in
/// `pkcs11_allowed_modules` is now refused before it is loaded, with a message that says how to allow it.
#[test]
fn a_module_path_other_than_the_configured_module_is_refused_before_it_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let pin = write_file(dir.path(), "user.pin", "123456\n", 0o600);
    let reference = |module: &Path| -> KeyRef {
        format!(
            "pkcs11:token=t;object=k?module-path={}&pin-source=file:{}",
            module.display(),
            pin.display()
        )
        .parse()
        .unwrap()
    };
    // The configured module: SoftHSM under `cargo xtask softhsm-test`, else a vendor path that is not there.
    let configured = std::env::var_os(testing::MODULE_ENV).map_or_else(
        || PathBuf::from("/opt/vendor/lib/libvendorpkcs11.so"),
        PathBuf::from,
    );
    let options = OpenOptions::new().pkcs11_module(Some(configured.clone()));
    let refused = |module: &Path| {
        let err = key_provider::open(&reference(module), &options)
            .map(|_| ())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pkcs11_allowed_modules")
                && text.contains("KEYBOUND_PKCS11_ALLOWED_MODULES")
                && text.contains("not loaded"),
            "{}: {text}",
            module.display()
        );
        assert!(text.contains(&module.display().to_string()), "{text}");
        err
    };
    for libc in [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
    ] {
        if Path::new(libc).is_file() {
            refused(Path::new(libc));
        }
    }
    // A symlink named like the configured module but pointing elsewhere does not pass for it.
    let disguised = dir.path().join(configured.file_name().unwrap());
    std::os::unix::fs::symlink(
        some_other_library().unwrap_or_else(|| pin.clone()),
        &disguised,
    )
    .unwrap();
    refused(&disguised);
    // The proof that nothing was loaded: a library whose constructor leaves a file behind.
    let marker = dir.path().join("loaded");
    if let Some(library) = library_with_constructor(dir.path(), &marker) {
        assert!(matches!(
            refused(&library),
            KeyError::ModuleNotAllowed { .. }
        ));
        assert!(
            !marker.exists(),
            "the refused library was loaded (its constructor ran)"
        );
        // Allowed, it is loaded (the constructor runs), then refused as no PKCS#11 library: the marker
        // does show loading.
        let allowing = options.clone().pkcs11_allowed_modules([&library]);
        let err = key_provider::open(&reference(&library), &allowing)
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, KeyError::ModuleUnavailable { .. }), "{err}");
        assert!(marker.exists(), "an allowed library is loaded");
    }
    // The configured module itself, under another name (a symlink to it), and, with SoftHSM set up, a key in
    // it: still work.
    let Some(token) = TestToken::shared(
        "a_module_path_other_than_the_configured_module_is_refused_before_it_is_loaded",
    ) else {
        return;
    };
    let key = key_provider::pkcs11::generate(
        &token.uri("allowed-module"),
        KeySpec::Ec(EcCurve::P256),
        &OpenOptions::new(),
    )
    .unwrap();
    let alias = dir.path().join("alias-of-the-configured-module.so");
    std::os::unix::fs::symlink(&token.module, &alias).unwrap();
    let via_alias = replace_query(
        &token.key_ref("allowed-module"),
        "module-path",
        &alias.display().to_string(),
    );
    let opened = key_provider::open(
        &via_alias,
        &OpenOptions::new().pkcs11_module(Some(token.module.clone())),
    )
    .expect("the configured module, named through a symlink");
    assert_eq!(opened.public_key(), key.public_key());
    opened.sign(SignatureScheme::EcdsaP256Sha256, b"m").unwrap();
}

#[test]
fn every_hsm_fault_has_its_own_documented_error() {
    let Some(token) = TestToken::fresh("every_hsm_fault_has_its_own_documented_error", "faults")
    else {
        return;
    };
    let pin = std::fs::read_to_string(&token.pin_file).unwrap();
    let pin = pin.trim_end();
    let dir = tempfile::tempdir().unwrap();
    let wrong_pin = write_file(dir.path(), "wrong.pin", "00000000\n", 0o600);
    // Before anything logged in to this token, the token itself judges the PIN.
    let err = open(&replace_query(
        &token.key_ref("fault-key"),
        "pin-source",
        &format!("file:{}", wrong_pin.display()),
    ))
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(err, KeyError::LoginFailed { .. })
            && err.to_string().contains("CKR_PIN_INCORRECT"),
        "{err}"
    );
    let good = key_provider::pkcs11::generate(
        &token.uri("fault-key"),
        KeySpec::Ec(EcCurve::P256),
        &OpenOptions::new(),
    )
    .unwrap();
    let reference = token.key_ref("fault-key");

    // Two private keys under one label: generate two, then rename the second's private key object
    // through the backend's own context (keybound itself refuses to create a second one).
    key_provider::pkcs11::generate(
        &token.uri("fault-dup"),
        KeySpec::Ec(EcCurve::P256),
        &OpenOptions::new(),
    )
    .unwrap();
    key_provider::pkcs11::generate(
        &token.uri("fault-twin"),
        KeySpec::Ec(EcCurve::P256),
        &OpenOptions::new(),
    )
    .unwrap();
    let ctx = testing::context(&token.module).unwrap();
    let slot = testing::slot(&token.uri("fault-key"), &OpenOptions::new()).unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let twin = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"fault-twin".to_vec()),
        ])
        .unwrap();
    session
        .update_attributes(twin[0], &[Attribute::Label(b"fault-dup".to_vec())])
        .unwrap();
    drop(session);
    let dup_ref = token.key_ref("fault-dup");

    let not_a_library = write_file(dir.path(), "libnot.so", "not a library\n", 0o755);
    let not_allowed = write_file(dir.path(), "libother.so", "not a library either\n", 0o755);
    let loose_pin = write_file(dir.path(), "loose.pin", &format!("{pin}\n"), 0o604);
    let missing_pin = dir.path().join("no-such.pin");
    let faults: Vec<(&str, KeyRef, &str, &str)> = vec![
        (
            "wrong PIN",
            replace_query(
                &reference,
                "pin-source",
                &format!("file:{}", wrong_pin.display()),
            ),
            "LoginFailed",
            "login to token",
        ),
        (
            "PIN file missing",
            replace_query(
                &reference,
                "pin-source",
                &format!("file:{}", missing_pin.display()),
            ),
            "PinUnavailable",
            "cannot read PIN file",
        ),
        (
            "PIN file world-readable",
            replace_query(
                &reference,
                "pin-source",
                &format!("file:{}", loose_pin.display()),
            ),
            "InsecurePinFile",
            "mode 604",
        ),
        (
            "token absent",
            reference
                .replace(&format!("token={}", token.label), "token=no-such-token")
                .parse()
                .unwrap(),
            "NotFound(token)",
            "tokens present",
        ),
        (
            "key absent",
            token.key_ref("no-such-key").parse().unwrap(),
            "NotFound(private key)",
            "no-such-key",
        ),
        (
            "two keys with one label",
            dup_ref.parse().unwrap(),
            "Ambiguous(private key)",
            "make the reference unique (add `id=` with the CKA_ID",
        ),
        (
            "module that is not a PKCS#11 library",
            replace_query(
                &reference,
                "module-path",
                &not_a_library.display().to_string(),
            ),
            "ModuleUnavailable",
            "not a PKCS#11 library",
        ),
        (
            "module that is neither configured nor allowed",
            replace_query(
                &reference,
                "module-path",
                &not_allowed.display().to_string(),
            ),
            "ModuleNotAllowed",
            "pkcs11_allowed_modules",
        ),
    ];
    // The configured module (KEYBOUND_PKCS11_MODULE) and, for its row, the library that is no PKCS#11 module.
    let options = OpenOptions::new().pkcs11_allowed_modules([&not_a_library]);
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/hsm.md"))
            .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (fault, key_ref, expected, says) in &faults {
        let err = key_provider::open(key_ref, &options)
            .map(|_| ())
            .unwrap_err();
        let text = err.to_string();
        let _ = writeln!(std::io::stderr(), "{fault}: {text}");
        assert_eq!(variant(&err), *expected, "{fault}: {text}");
        assert!(text.contains(says), "{fault}: {text}");
        assert!(
            !text.contains(pin) && !format!("{err:?}").contains(pin),
            "{fault}: the PIN is in the error"
        );
        assert!(seen.insert(variant(&err)), "{fault}: not a distinct error");
        let name = expected.split('(').next().unwrap();
        assert!(
            docs.contains(&format!("`KeyError::{name}`")),
            "{fault}: docs/hsm.md does not document KeyError::{name}"
        );
    }
    assert_eq!(seen.len(), faults.len());
    // None of it disturbed the good key.
    good.sign(SignatureScheme::EcdsaP256Sha256, b"still fine")
        .expect("the good key still signs");
}

#[test]
fn sessions_closed_under_load_fail_no_signature() {
    let Some(token) = TestToken::fresh("sessions_closed_under_load_fail_no_signature", "load")
    else {
        return;
    };
    // The audit events (INFO) of every thread; those that needed a reconnect say `retried=true`.
    let log = keybound_test_support::capture::capture_global(tracing::Level::INFO);

    let rsa = key_provider::pkcs11::generate(
        &token.uri("load-rsa"),
        KeySpec::Rsa(2048),
        &OpenOptions::new(),
    )
    .unwrap();
    let ec = key_provider::pkcs11::generate(
        &token.uri("load-ec"),
        KeySpec::Ec(EcCurve::P256),
        &OpenOptions::new(),
    )
    .unwrap();
    let slot = testing::slot(&token.uri("load-rsa"), &OpenOptions::new())
        .unwrap()
        .id();
    // Each thread signs at least PER_THREAD times, and goes on until the closer has closed CLOSES times.
    const PER_THREAD: usize = 150;
    const CLOSES: usize = 40;
    let done = Arc::new(AtomicBool::new(false));
    let closes = Arc::new(AtomicUsize::new(0));
    // Signatures made so far (counted under the gate's read lock, so exact whenever the closer holds it).
    let signatures = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();

    // SoftHSM 2.6 is not safe against C_CloseAllSessions racing a call in flight on another thread (it
    // frees the session under C_Sign and segfaults; a real HSM answers CKR_SESSION_HANDLE_INVALID), so the
    // closer strikes between calls: each signature is a read lock, each close the write lock. The sessions
    // keybound holds are still pulled from under all four threads at once, again and again.
    let gate = Arc::new(std::sync::RwLock::new(()));
    // Every close waits until a signature was made since the one before: then each close is followed by at
    // least one operation on the sessions it killed, which must reconnect (two closes with nothing between
    // them would be one fault). So at least CLOSES operations reconnect, as docs/security.md says.
    let closer = {
        let (done, closes, module) = (done.clone(), closes.clone(), token.module.clone());
        let (gate, signatures) = (gate.clone(), signatures.clone());
        std::thread::spawn(move || {
            let mut before = 0;
            for _ in 0..CLOSES {
                std::thread::sleep(Duration::from_millis(15));
                let waiting = Instant::now();
                while signatures.load(Ordering::SeqCst) == before {
                    if waiting.elapsed() > Duration::from_secs(60) {
                        // The signers are stuck: stop closing; the assertions below report it.
                        done.store(true, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _exclusive = gate.write().unwrap();
                before = signatures.load(Ordering::SeqCst);
                support::close_all_sessions(&module, slot);
                closes.fetch_add(1, Ordering::Relaxed);
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let signers: Vec<_> = (0..4)
        .map(|t| {
            let (key, scheme) = if t % 2 == 0 {
                (rsa.clone(), SignatureScheme::RsaPssSha256)
            } else {
                (ec.clone(), SignatureScheme::EcdsaP256Sha256)
            };
            let failures = failures.clone();
            let gate = gate.clone();
            let done = done.clone();
            let signatures = signatures.clone();
            std::thread::spawn(move || {
                let mut signed = Vec::with_capacity(PER_THREAD);
                let mut i = 0;
                while i < PER_THREAD || !done.load(Ordering::Relaxed) {
                    i += 1;
                    let message = format!("thread {t} message {i}");
                    let shared = gate.read().unwrap();
                    let result = key.sign(scheme, message.as_bytes());
                    if result.is_ok() {
                        signatures.fetch_add(1, Ordering::SeqCst);
                    }
                    drop(shared);
                    match result {
                        Ok(sig) => signed.push((key.clone(), scheme, message, sig)),
                        Err(e) => failures
                            .lock()
                            .unwrap()
                            .push(format!("thread {t} #{i}: {e}")),
                    }
                }
                signed
            })
        })
        .collect();
    let mut all = Vec::new();
    for s in signers {
        all.extend(s.join().expect("signer thread"));
    }
    closer.join().expect("closer thread");
    let elapsed = started.elapsed();

    assert_eq!(*failures.lock().unwrap(), Vec::<String>::new());
    assert!(all.len() >= 4 * PER_THREAD);
    for (key, scheme, message, sig) in &all {
        assert!(
            support::jsonwebtoken_verifies(key.public_key(), *scheme, message.as_bytes(), sig),
            "{message}"
        );
    }
    let closes = closes.load(Ordering::Relaxed);
    let retried = log.text().matches("retried=true").count();
    assert_eq!(closes, CLOSES, "C_CloseAllSessions calls");
    // Each close was followed by an operation on a session it killed (see the closer).
    assert!(
        retried >= CLOSES,
        "only {retried} operations reconnected after {closes} closes"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{} signatures on 4 threads in {elapsed:?}, {closes} C_CloseAllSessions, {retried} operations \
         reconnected and retried, 0 failures",
        all.len()
    );
}
