//! Where a token PIN comes from: `pin-source=file:PATH` (a file only its owner can read; its first line,
//! without the line ending), `pin-source=env:VAR`, `pin-source=prompt` (typed at the terminal on standard
//! input with echo off; refused at once when standard input is not a terminal), or an inline `pin-value=`
//! that the caller explicitly allowed ([`OpenOptions::allow_pin_value`]). The PIN is kept in a [`SecretString`] (wiped on drop) and
//! the bytes read on the way in `Zeroizing` buffers; it never appears in messages, logs or `Debug` output.

use std::io::Read as _;
use std::path::Path;

use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::{OpenOptions, PinSource, Pkcs11Uri};

/// Longest PIN file accepted; a PIN file holds one short line.
const MAX_PIN_FILE: usize = 4096;

/// The PIN the key reference names, or `None` when it names none.
///
/// # Errors
/// [`KeyError::PinUnavailable`] or [`KeyError::InsecurePinFile`].
pub(crate) fn resolve(
    uri: &Pkcs11Uri,
    options: &OpenOptions,
) -> Result<Option<SecretString>, KeyError> {
    match (&uri.pin_source, uri.pin_value()) {
        (Some(PinSource::File(path)), _) => read_pin_file(path, options.allow_insecure_permissions).map(Some),
        (Some(PinSource::Env(var)), _) => {
            let value = Zeroizing::new(std::env::var(var).map_err(|_| KeyError::PinUnavailable {
                reason: format!("environment variable {var} (from `pin-source=env:{var}`) is not set or not UTF-8"),
            })?);
            pin_from_bytes(value.as_bytes(), &format!("environment variable {var}")).map(Some)
        }
        (Some(PinSource::Prompt), _) => prompted(uri).map(Some),
        (None, Some(value)) if options.allow_pin_value => {
            pin_from_bytes(value.as_bytes(), "`pin-value` of the key reference").map(Some)
        }
        (None, Some(_)) => Err(KeyError::PinUnavailable {
            reason: "the key reference carries `pin-value=`, which is refused unless explicitly allowed (it ends up \
                     in shell history and process listings); use `pin-source=file:/path/to/pin` (mode 0600) or \
                     `pin-source=env:VAR`"
                .into(),
        }),
        (None, None) => Ok(None),
    }
}

/// The PINs typed at the terminal in this process, by module and token: a person is asked once per token,
/// however many times a command reaches it (`keys public --format jwk` opens the key and then looks for its
/// certificate). Kept as `SecretString`s, wiped when the process ends the way every open key's PIN is.
type Prompted = std::sync::Mutex<Vec<(String, SecretString)>>;

fn prompted_pins() -> &'static Prompted {
    static PINS: std::sync::OnceLock<Prompted> = std::sync::OnceLock::new();
    PINS.get_or_init(Prompted::default)
}

/// The PIN for `uri`'s token: the one already typed in this process, or a new prompt.
fn prompted(uri: &Pkcs11Uri) -> Result<SecretString, KeyError> {
    let which = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        uri.module_path, uri.module_name, uri.token, uri.serial, uri.slot_id
    );
    // Held while prompting: two threads reaching one token ask once.
    let mut pins = prompted_pins()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, pin)) = pins.iter().find(|(w, _)| *w == which) {
        return Ok(pin.clone());
    }
    let pin = prompt(uri)?;
    pins.push((which, pin.clone()));
    Ok(pin)
}

/// Asks for the PIN on the terminal: echo is turned off, the prompt goes to stderr, the PIN is read from
/// standard input (echo restored afterwards, also when reading fails), straight from the file descriptor into a
/// buffer of fixed size that is wiped on drop (no buffered copy is left in the standard library).
///
/// # Errors
/// [`KeyError::PinUnavailable`] when standard input is not a terminal (a pipe, a file, no terminal at all:
/// scripts use `pin-source=file:` or `env:`), or nothing was typed.
fn prompt(uri: &Pkcs11Uri) -> Result<SecretString, KeyError> {
    use std::io::{IsTerminal as _, Write as _};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(KeyError::PinUnavailable {
            reason: "`pin-source=prompt` reads the PIN from a terminal, and standard input is not one; in \
                     scripts and services use `pin-source=file:/path/to/pin` (mode 0600) or `pin-source=env:VAR`"
                .into(),
        });
    }
    let token = uri
        .token
        .as_deref()
        .or(uri.serial.as_deref())
        .unwrap_or("the token");
    // Echo goes off before the prompt is shown, so nothing typed after it is echoed; one write.
    let prompt = format!("PIN for PKCS#11 token '{token}': ");
    let line = read_without_echo(&stdin, || {
        let mut stderr = std::io::stderr();
        let _ = stderr.write_all(prompt.as_bytes());
        let _ = stderr.flush();
    });
    let line = line.map_err(|e| KeyError::PinUnavailable {
        reason: format!("cannot read the PIN from the terminal: {e}"),
    })?;
    pin_from_bytes(&line, "the PIN typed at the terminal")
}

/// One line from the terminal on `stdin`, echo off.
#[cfg(unix)]
fn read_without_echo(
    stdin: &std::io::Stdin,
    prompt: impl FnOnce(),
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let saved = tcgetattr(stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    // The newline typed still moves the cursor on.
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(stdin, OptionalActions::Now, &quiet)?;
    prompt();
    let read = read_line(stdin);
    let restored = tcsetattr(stdin, OptionalActions::Now, &saved);
    let line = read?;
    restored?;
    Ok(line)
}

#[cfg(not(unix))]
fn read_without_echo(_: &std::io::Stdin, _: impl FnOnce()) -> std::io::Result<Zeroizing<Vec<u8>>> {
    Err(std::io::Error::other(
        "reading a PIN without echo is supported on Unix only",
    ))
}

/// Reads from the file descriptor (not through the standard library's buffer) up to a newline.
#[cfg(unix)]
fn read_line(stdin: &std::io::Stdin) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(vec![0u8; MAX_PIN_FILE]);
    let mut len = 0;
    while len < line.len() {
        match rustix::io::read(stdin, &mut line[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if line[..len].contains(&b'\n') {
                    break;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    line.truncate(len);
    Ok(line)
}

/// Reads a PIN file: refuses one that group or others can access, takes the first line.
pub(crate) fn read_pin_file(path: &Path, allow_insecure: bool) -> Result<SecretString, KeyError> {
    let unreadable = |e: std::io::Error| KeyError::PinUnavailable {
        reason: format!("cannot read PIN file {}: {e}", path.display()),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // Check the permissions of the file we opened, not of whatever the path names a moment later.
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(KeyError::PinUnavailable {
            reason: format!("PIN file {} is not a regular file", path.display()),
        });
    }
    check_permissions(path, &meta, allow_insecure)?;
    // Allocated once, large enough for the whole read, so no copy of the PIN is left behind by a reallocation.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PIN_FILE + 2));
    file.take(MAX_PIN_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > MAX_PIN_FILE {
        return Err(KeyError::PinUnavailable {
            reason: format!(
                "PIN file {} is larger than {MAX_PIN_FILE} bytes; it should hold only the PIN",
                path.display()
            ),
        });
    }
    pin_from_bytes(&bytes, &format!("PIN file {}", path.display()))
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &std::fs::Metadata, allow: bool) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 && !allow {
        return Err(KeyError::InsecurePinFile {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path, _: &std::fs::Metadata, _: bool) -> Result<(), KeyError> {
    Ok(())
}

/// The first line of `bytes` (without `\n` or `\r\n`) as a PIN.
fn pin_from_bytes(bytes: &[u8], what: &str) -> Result<SecretString, KeyError> {
    let line = match bytes.iter().position(|b| *b == b'\n') {
        Some(end) => &bytes[..end],
        None => bytes,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(KeyError::PinUnavailable {
            reason: format!("{what} is empty"),
        });
    }
    let text = std::str::from_utf8(line).map_err(|_| KeyError::PinUnavailable {
        reason: format!("{what} is not valid UTF-8"),
    })?;
    Ok(SecretString::from(text.to_owned()))
}

/// Compares two PINs in time independent of where they differ.
pub(crate) fn pins_equal(a: &SecretString, b: &SecretString) -> bool {
    let (a, b) = (a.expose_secret().as_bytes(), b.expose_secret().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn pin_file(contents: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        f
    }

    fn uri_for(f: &tempfile::NamedTempFile) -> Pkcs11Uri {
        format!("pkcs11:object=k?pin-source=file:{}", f.path().display())
            .parse()
            .unwrap()
    }

    #[test]
    fn pin_file_first_line_without_newline() {
        for contents in [&b"1234\n"[..], b"1234", b"1234\r\n", b"1234\nignored\n"] {
            let f = pin_file(contents, 0o600);
            let pin = resolve(&uri_for(&f), &OpenOptions::new()).unwrap().unwrap();
            assert_eq!(pin.expose_secret(), "1234");
        }
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_pin_file_is_refused_with_its_own_error() {
        let f = pin_file(b"1234\n", 0o640);
        let err = resolve(&uri_for(&f), &OpenOptions::new()).unwrap_err();
        assert!(
            matches!(err, KeyError::InsecurePinFile { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        let f = pin_file(b"1234\n", 0o604);
        assert!(matches!(
            resolve(&uri_for(&f), &OpenOptions::new()),
            Err(KeyError::InsecurePinFile { .. })
        ));
        let allowed = OpenOptions::new().allow_insecure_permissions(true);
        assert!(resolve(&uri_for(&f), &allowed).unwrap().is_some());
    }

    #[test]
    fn empty_or_missing_pin_file_is_an_error() {
        let f = pin_file(b"\n", 0o600);
        assert!(matches!(
            resolve(&uri_for(&f), &OpenOptions::new()),
            Err(KeyError::PinUnavailable { .. })
        ));
        let uri: Pkcs11Uri = "pkcs11:object=k?pin-source=file:/nonexistent/pin"
            .parse()
            .unwrap();
        assert!(matches!(
            resolve(&uri, &OpenOptions::new()),
            Err(KeyError::PinUnavailable { .. })
        ));
    }

    #[test]
    fn pin_value_needs_explicit_permission_and_is_never_printed() {
        let uri: Pkcs11Uri = "pkcs11:object=k?pin-value=s3cr3t".parse().unwrap();
        let err = resolve(&uri, &OpenOptions::new()).unwrap_err();
        assert!(err.to_string().contains("pin-source=file:"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"));
        let pin = resolve(&uri, &OpenOptions::new().allow_pin_value(true))
            .unwrap()
            .unwrap();
        assert_eq!(pin.expose_secret(), "s3cr3t");
        assert!(!format!("{pin:?}").contains("s3cr3t"));
    }

    #[test]
    fn unset_env_pin_names_the_variable() {
        let uri: Pkcs11Uri = "pkcs11:object=k?pin-source=env:KEYBOUND_TEST_SURELY_UNSET_PIN"
            .parse()
            .unwrap();
        let err = resolve(&uri, &OpenOptions::new()).unwrap_err().to_string();
        assert!(err.contains("KEYBOUND_TEST_SURELY_UNSET_PIN"), "{err}");
    }

    #[test]
    fn prompt_parses_and_prints_back() {
        let uri: Pkcs11Uri = "pkcs11:token=t;object=k?pin-source=prompt".parse().unwrap();
        assert_eq!(uri.pin_source, Some(PinSource::Prompt));
        assert!(uri.to_string().ends_with("?pin-source=prompt"), "{uri}");
    }

    #[test]
    fn no_pin_source_is_no_pin() {
        let uri: Pkcs11Uri = "pkcs11:object=k".parse().unwrap();
        assert!(resolve(&uri, &OpenOptions::new()).unwrap().is_none());
    }

    #[test]
    fn pin_comparison() {
        let a = SecretString::from("1234");
        assert!(pins_equal(&a, &SecretString::from("1234")));
        assert!(!pins_equal(&a, &SecretString::from("1235")));
        assert!(!pins_equal(&a, &SecretString::from("12345")));
    }
}
