//! Reading `FILE|-` arguments and writing output.

use std::io::{Read as _, Write as _};
use std::path::Path;

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
