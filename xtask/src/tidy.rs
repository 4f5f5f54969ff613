//! Tidy: source rules checked by `cargo test -p xtask` (so by `cargo xtask test` and CI), in the manner of
//! rust-analyzer's `xtask/src/tidy.rs`. Each rule is one `#[test]` that lists every offending `file:line`.
//!
//! 1. **Module docs**: every `.rs` file of a crate (`crates/*/{src,tests,benches,examples}/**`) and of
//!    `xtask/src` starts with a `//!` doc comment: crate roots, modules, test and bench binaries alike.
//! 2. **No unexplained `unwrap()` / `expect(`** in non-test code under `crates/*/src`: each one needs a `//`
//!    comment on the same line or the line above saying why it cannot fail. Test code is exempt. *Where
//!    test code starts* is approximated: everything after the first `#[cfg(test)]` (or `#[cfg(all(test,
//!    …))]`) line of a file is treated as test code, which holds for this workspace's layout (test modules
//!    at the end of the file). Exempt paths: [`UNWRAP_EXEMPT`].
//! 3. **No printing from libraries**: no `println!`, `print!`, `eprintln!`, `eprint!` or `dbg!` in non-test
//!    code under `crates/*/src`, except in the programs listed in [`PRINT_EXEMPT`]. Libraries report through
//!    return values and `tracing`.
//! 4. **No test support in product crates** (the crates of `check_features::PACKAGES`): no `pub mod testing`
//!    and no `testing.rs` under their `src/`. Test support lives in `crates/test-support`
//!    (`keybound-test-support`, never published).
//! 5. **Test support is a dev-dependency only**: no product crate's manifest names `keybound-test-support`
//!    in a normal or build dependency section (its `[features]` may switch features of the dev-dependency
//!    on: they act in test builds only), and key-provider's `test-hooks` feature is switched on by
//!    `crates/test-support/Cargo.toml` alone: no other manifest names it, and key-provider's own manifest
//!    only defines it (so no default or backend feature includes it).

use std::path::{Path, PathBuf};

/// Paths (files, or directories ending in `/`) where `unwrap()`/`expect(` need no comment, and why.
const UNWRAP_EXEMPT: &[(&str, &str)] = &[
    (
        "crates/test-support/",
        "test support (a dev-dependency only): a panic there is the test's failure message",
    ),
    (
        "crates/benches/",
        "the benchmark harness: a panic there is a failed benchmark run",
    ),
];

/// Path prefixes (relative to the workspace root) where printing is allowed, and why.
const PRINT_EXEMPT: &[(&str, &str)] = &[
    (
        "crates/cli/",
        "the `keybound` binary: stdout and stderr are its interface",
    ),
    (
        "crates/demo/",
        "the `cargo xtask demo` program: printing is its job",
    ),
    (
        "crates/flex-simulator/src/bin/",
        "the stand-alone simulator binary prints its URL",
    ),
    (
        "crates/benches/src/bin/",
        "`keyservice-raw`, the reference loop of `cargo xtask bench`: it prints its rate for xtask to read",
    ),
];

/// The workspace's Rust files under `crates/*/{src,tests,benches,examples}` and `xtask/src`, relative to the
/// root, sorted.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join("xtask/src")];
    if let Ok(entries) = std::fs::read_dir(root.join("crates")) {
        for entry in entries.flatten() {
            for sub in ["src", "tests", "benches", "examples"] {
                dirs.push(entry.path().join(sub));
            }
        }
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
    }
    files.sort();
    files
}

/// Whether `path` (relative to the root) is under some crate's `src/`.
fn is_crate_source(path: &Path) -> bool {
    let mut parts = path.components().map(|c| c.as_os_str());
    parts.next() == Some("crates".as_ref()) && parts.nth(1) == Some("src".as_ref())
}

/// A file's lines up to (not including) its first `#[cfg(test)]`-like line, numbered from 1.
fn non_test_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .take_while(|(_, l)| {
            let t = l.trim_start();
            !(t.starts_with("#[cfg(test)]") || t.starts_with("#[cfg(all(test,"))
        })
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with("//")
}

/// The code part of a line: everything before a `//` comment that is outside a string literal (a plain
/// scan, good enough for this check).
fn code_of(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `unwrap()` / `expect(` calls without a `//` comment on the same or the previous line.
fn unexplained_unwraps(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut previous = "";
    for (number, line) in non_test_lines(text) {
        if !is_comment(line) {
            let code = code_of(line);
            let call = code.contains(".unwrap()") || code.contains(".expect(");
            let explained = code.len() < line.len() || is_comment(previous);
            if call && !explained {
                found.push(number);
            }
        }
        previous = line;
    }
    found
}

/// Lines calling a printing macro, outside comments.
fn prints(text: &str) -> Vec<usize> {
    const MACROS: [&str; 5] = ["println!", "print!", "eprintln!", "eprint!", "dbg!"];
    non_test_lines(text)
        .filter(|(_, line)| !is_comment(line))
        .filter(|(_, line)| {
            let code = code_of(line);
            MACROS.iter().any(|m| {
                code.match_indices(m).any(|(at, _)| {
                    // Not part of a longer name (`eprintln!` contains `println!`, `my_print!`…).
                    !code[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            })
        })
        .map(|(number, _)| number)
        .collect()
}

/// Lines of non-test code under a product crate's `src/` that declare a public `testing` module.
fn public_testing_modules(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !is_comment(line))
        .filter(|(_, line)| {
            let code = code_of(line);
            code.match_indices("pub mod testing").any(|(at, m)| {
                let before = code[..at].chars().next_back();
                let after = code[at + m.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// The lines of a Cargo manifest, each with the header of the table it is in (`dependencies`,
/// `target.'cfg(unix)'.dependencies`, … ; empty before the first header) and its number; comments are cut off.
fn manifest_lines(text: &str) -> Vec<(String, usize, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or_default().trim();
        if let Some(header) = code.strip_prefix('[') {
            table = header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
            // The header itself counts as a line of its table (`[dependencies.keybound-test-support]`).
        }
        if !code.is_empty() {
            out.push((table.clone(), i + 1, code.to_owned()));
        }
    }
    out
}

/// Whether a manifest table holds dependencies of the built library or binaries (normal or build
/// dependencies, also per target), as opposed to dev-dependencies.
fn is_normal_dependency_table(table: &str) -> bool {
    let table = table.strip_prefix("target.").map_or(table, |rest| {
        // `target.'cfg(…)'.dependencies…`: what follows the target's spec.
        rest.find(".dependencies")
            .or_else(|| rest.find(".build-dependencies"))
            .map_or(rest, |at| &rest[at + 1..])
    });
    ["dependencies", "build-dependencies"]
        .iter()
        .any(|t| table == *t || table.starts_with(&format!("{t}.")))
}

/// Lines of a product crate's manifest that make `keybound-test-support` a normal or build dependency.
fn test_support_as_normal_dependency(manifest: &str) -> Vec<usize> {
    manifest_lines(manifest)
        .into_iter()
        .filter(|(table, _, line)| {
            is_normal_dependency_table(table) && line.contains(TEST_SUPPORT_PACKAGE)
        })
        .map(|(_, number, _)| number)
        .collect()
}

/// Lines of a manifest naming key-provider's `test-hooks` feature; in key-provider's own manifest, its
/// definition (`test-hooks = [...]` in `[features]`) is allowed.
fn test_hooks_mentions(manifest: &str, is_key_provider: bool) -> Vec<usize> {
    manifest_lines(manifest)
        .into_iter()
        .filter(|(table, _, line)| {
            line.contains("test-hooks")
                && !(is_key_provider && table == "features" && line.starts_with("test-hooks ="))
        })
        .map(|(_, number, _)| number)
        .collect()
}

/// The package of `crates/test-support`.
const TEST_SUPPORT_PACKAGE: &str = "keybound-test-support";

fn read(root: &Path, path: &Path) -> String {
    std::fs::read_to_string(root.join(path))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn report(rule: &str, offences: &[String]) {
    assert!(
        offences.is_empty(),
        "tidy: {rule} ({} found):\n  {}\n",
        offences.len(),
        offences.join("\n  ")
    );
}

#[test]
fn every_file_starts_with_a_module_doc() {
    let root = crate::root();
    let files = rust_files(&root);
    assert!(files.len() > 50, "found only {} files", files.len());
    let offences: Vec<String> = files
        .iter()
        .filter(|f| !read(&root, f).starts_with("//!"))
        .map(|f| {
            format!(
                "{}: add a `//!` comment saying what this file is for",
                f.display()
            )
        })
        .collect();
    report("files without a module doc", &offences);
}

#[test]
fn library_unwraps_say_why_they_cannot_fail() {
    let root = crate::root();
    let mut offences = Vec::new();
    for file in rust_files(&root).iter().filter(|f| is_crate_source(f)) {
        if UNWRAP_EXEMPT.iter().any(|(p, _)| file.starts_with(p)) {
            continue;
        }
        for line in unexplained_unwraps(&read(&root, file)) {
            offences.push(format!(
                "{}:{line}: return an error, or add a `//` comment saying why this cannot fail",
                file.display()
            ));
        }
    }
    report("unwrap()/expect( without a reason", &offences);
}

#[test]
fn libraries_do_not_print() {
    let root = crate::root();
    let mut offences = Vec::new();
    for file in rust_files(&root).iter().filter(|f| is_crate_source(f)) {
        if PRINT_EXEMPT
            .iter()
            .any(|(prefix, _)| file.starts_with(prefix))
        {
            continue;
        }
        for line in prints(&read(&root, file)) {
            offences.push(format!(
                "{}:{line}: libraries report through results and `tracing`, not stdout/stderr",
                file.display()
            ));
        }
    }
    report("printing in library code", &offences);
}

#[test]
fn product_crates_ship_no_test_support() {
    let root = crate::root();
    let mut offences = Vec::new();
    for (package, dir) in crate::check_features::PACKAGES {
        let src = Path::new(dir).join("src");
        for file in rust_files(&root).iter().filter(|f| f.starts_with(&src)) {
            if file.file_name().is_some_and(|n| n == "testing.rs")
                || file.ends_with("testing/mod.rs")
            {
                offences.push(format!(
                    "{}: test support of {package} belongs in crates/test-support (a dev-dependency), \
                     not in the product crate",
                    file.display()
                ));
            }
            for line in public_testing_modules(&read(&root, file)) {
                offences.push(format!(
                    "{}:{line}: a public `testing` module ships test support in {package}; move it to \
                     crates/test-support (keybound-test-support, a dev-dependency)",
                    file.display()
                ));
            }
        }
    }
    report("test support in a product crate", &offences);
}

#[test]
fn test_support_is_a_dev_dependency_only() {
    let root = crate::root();
    let support = read(&root, Path::new("crates/test-support/Cargo.toml"));
    assert!(
        support.contains(&format!("name = \"{TEST_SUPPORT_PACKAGE}\""))
            && support.contains("publish = false"),
        "crates/test-support/Cargo.toml must be package {TEST_SUPPORT_PACKAGE} with publish = false"
    );
    let mut offences = Vec::new();
    for (package, dir) in crate::check_features::PACKAGES {
        let path = Path::new(dir).join("Cargo.toml");
        for line in test_support_as_normal_dependency(&read(&root, &path)) {
            offences.push(format!(
                "{}:{line}: {TEST_SUPPORT_PACKAGE} may only be a [dev-dependencies] entry of {package}",
                path.display()
            ));
        }
    }
    let mut manifests = vec![
        PathBuf::from("Cargo.toml"),
        PathBuf::from("xtask/Cargo.toml"),
    ];
    if let Ok(entries) = std::fs::read_dir(root.join("crates")) {
        for entry in entries.flatten() {
            let path = entry.path().join("Cargo.toml");
            if path.is_file() {
                manifests.push(path.strip_prefix(&root).unwrap_or(&path).to_path_buf());
            }
        }
    }
    manifests.sort();
    assert!(
        manifests.len() > 10,
        "found only {} manifests",
        manifests.len()
    );
    for path in manifests
        .iter()
        .filter(|p| !p.starts_with("crates/test-support"))
    {
        let is_key_provider = path.starts_with("crates/key-provider");
        for line in test_hooks_mentions(&read(&root, path), is_key_provider) {
            offences.push(format!(
                "{}:{line}: key-provider's `test-hooks` feature is for keybound-test-support alone; \
                 switch on the test support crate's features instead",
                path.display()
            ));
        }
    }
    report("test support reachable outside tests", &offences);
}

#[test]
fn the_test_support_scanners_themselves() {
    let source = "\
//! doc
// pub mod testing; (a comment)
pub mod testing;
#[doc(hidden)] pub mod testing {
pub mod testing_extra;
pub(crate) mod testing;
mod testing;
";
    assert_eq!(public_testing_modules(source), [3, 4]);
    let manifest = "\
[package]
name = \"p\" # keybound-test-support in a comment

[features]
pkcs11 = [\"key-provider/pkcs11\", \"keybound-test-support/pkcs11\"]
test-hooks = [\"pkcs11\"]
default = [\"test-hooks\"]

[dependencies]
keybound-test-support = { path = \"../test-support\" }

[dev-dependencies]
keybound-test-support = { path = \"../test-support\" }

[target.'cfg(unix)'.dependencies]
keybound-test-support.workspace = true

[target.'cfg(unix)'.dev-dependencies]
keybound-test-support.workspace = true

[build-dependencies.keybound-test-support]
path = \"../test-support\"
x = { features = [\"test-hooks\"] }
";
    assert_eq!(test_support_as_normal_dependency(manifest), [10, 16, 21]);
    assert_eq!(test_hooks_mentions(manifest, true), [7, 23]);
    assert_eq!(test_hooks_mentions(manifest, false), [6, 7, 23]);
    assert!(is_normal_dependency_table(
        "target.'cfg(unix)'.build-dependencies"
    ));
    assert!(!is_normal_dependency_table(
        "target.'cfg(unix)'.dev-dependencies"
    ));
    assert!(!is_normal_dependency_table("dev-dependencies.x"));
}

#[test]
fn exemptions_name_existing_paths() {
    let root = crate::root();
    for (path, why) in UNWRAP_EXEMPT.iter().chain(PRINT_EXEMPT) {
        assert!(!why.is_empty());
        assert!(
            root.join(path).exists(),
            "tidy exemption {path} does not exist any more: remove it"
        );
    }
}

#[test]
fn the_scanners_themselves() {
    let text = "\
//! doc
fn a() {
    x.unwrap();
    y.unwrap(); // checked above
    // The map always has this key.
    z.expect(\"present\");
    w.unwrap_or(1);
    let s = \"// not a comment\"; v.unwrap();
    println!(\"hi\");
    my_println!(\"fine\");
    eprintln!(\"also\");
}
#[cfg(test)]
mod tests {
    fn t() { q.unwrap(); println!(); }
}
";
    assert_eq!(unexplained_unwraps(text), [3, 8]);
    assert_eq!(prints(text), [9, 11]);
    assert!(is_crate_source(Path::new("crates/a/src/lib.rs")));
    assert!(!is_crate_source(Path::new("crates/a/tests/t.rs")));
    assert!(!is_crate_source(Path::new("xtask/src/main.rs")));
}
