//! `cargo xtask demo`: the README's first command. Builds `keybound`, then walks through the main job on an
//! embedded default — file keys generated in a temporary directory — printing each command and what happened:
//! key generation and onboarding export, a signed client-assertion-style JWT (decoded and verified), a
//! rejected tampered token, and a JWE round trip. Secrets are never printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Result, root};

struct Demo {
    bin: PathBuf,
    dir: PathBuf,
    step: usize,
}

impl Demo {
    fn run(
        &mut self,
        title: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<(bool, String, String)> {
        self.step += 1;
        println!(
            "\n[{}] {title}\n    $ keybound {}",
            self.step,
            args.join(" ")
        );
        let mut child = Command::new(&self.bin)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run keybound: {e}"))?;
        if let Some(input) = stdin {
            use std::io::Write as _;
            if let Some(mut pipe) = child.stdin.take() {
                pipe.write_all(input).map_err(|e| e.to_string())?;
            }
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Ok((out.status.success(), stdout, stderr))
    }

    fn expect_ok(&mut self, title: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
        let (ok, stdout, stderr) = self.run(title, args, stdin)?;
        if !ok {
            return Err(format!("step failed: {}", stderr.trim()));
        }
        Ok(stdout)
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the demo.
pub fn run(_args: &[String]) -> Result<()> {
    let root = root();
    println!("building keybound …");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "keybound-cli",
            "--bin",
            "keybound",
        ])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build failed".into());
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join("debug").join("keybound");
    let dir = std::env::temp_dir().join(format!("keybound-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut demo = Demo {
        bin,
        dir: dir.clone(),
        step: 0,
    };
    let result = steps(&mut demo, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    println!("\ndemo finished: every step behaved as expected");
    Ok(())
}

fn steps(demo: &mut Demo, dir: &Path) -> Result<()> {
    println!("working in {} (removed at the end)", dir.display());
    let out = demo.expect_ok(
        "Generate the lender's RSA key (PKCS#8 PEM, mode 0600)",
        &[
            "keys",
            "generate",
            "--key",
            "file:lender.pem",
            "--kty",
            "RSA",
            "--bits",
            "3072",
        ],
        None,
    )?;
    println!("{}", indent(&out));
    demo.expect_ok(
        "Export public_key.pem + public_key_digest.txt for onboarding",
        &[
            "keys",
            "export",
            "--key",
            "file:lender.pem",
            "--out-dir",
            "onboarding",
        ],
        None,
    )?;
    let digest = std::fs::read_to_string(dir.join("onboarding/public_key_digest.txt"))
        .map_err(|e| e.to_string())?;
    println!("{}", indent(digest.trim()));
    let jwk = demo.expect_ok(
        "Public key as a JWK (kid = RFC 7638 thumbprint)",
        &[
            "keys",
            "public",
            "--key",
            "file:lender.pem",
            "--format",
            "jwk",
        ],
        None,
    )?;
    println!("{}", indent(jwk.trim()));

    let claims = br#"{"iss":"example-bank","sub":"example-bank","aud":"https://idp.example/realms/loan-partner/protocol/openid-connect/token"}"#;
    let token = demo.expect_ok(
        "Sign an RFC 7523 client assertion (RS256, 60 s, unique jti)",
        &[
            "jwt",
            "sign",
            "--key",
            "file:lender.pem",
            "--alg",
            "RS256",
            "--typ",
            "JWT",
            "--claims",
            "-",
            "--iat",
            "--exp-in",
            "60",
            "--jti",
        ],
        Some(claims),
    )?;
    let token = token.trim().to_owned();
    println!(
        "    token: {}… ({} bytes)",
        &token[..token.len().min(24)],
        token.len()
    );
    let decoded = demo.expect_ok(
        "Decode it (unverified, for display)",
        &["jwt", "decode", "--token", "-"],
        Some(token.as_bytes()),
    )?;
    println!("{}", indent(decoded.trim()));
    let verified = demo.expect_ok(
        "Verify it with the exported public key, checking iss and aud",
        &[
            "jwt",
            "verify",
            "--pubkey",
            "onboarding/public_key.pem",
            "--token",
            "-",
            "--iss",
            "example-bank",
            "--aud",
            "https://idp.example/realms/loan-partner/protocol/openid-connect/token",
        ],
        Some(token.as_bytes()),
    )?;
    println!(
        "    valid; claims: {}",
        verified.split_whitespace().collect::<String>()
    );

    let mut tampered = token.clone().into_bytes();
    let i = token.find('.').map_or(0, |i| i + 2);
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let (ok, _, stderr) = demo.run(
        "A tampered token is rejected (exit 1)",
        &[
            "jwt",
            "verify",
            "--pubkey",
            "onboarding/public_key.pem",
            "--token",
            "-",
        ],
        Some(&tampered),
    )?;
    if ok {
        return Err("tampered token was accepted".into());
    }
    println!("    rejected: {}", stderr.trim());

    let jwe = demo.expect_ok(
        "Encrypt card-like data to the public key (JWE RSA-OAEP-256 + A256GCM)",
        &[
            "jwe",
            "encrypt",
            "--pubkey",
            "onboarding/public_key.pem",
            "--alg",
            "RSA-OAEP-256",
            "--enc",
            "A256GCM",
        ],
        Some(br#"{"number":"4111111111111111"}"#),
    )?;
    println!(
        "    JWE: {}… ({} bytes)",
        &jwe[..jwe.len().min(24)],
        jwe.trim().len()
    );
    let plain = demo.expect_ok(
        "Decrypt it through the key backend",
        &["jwe", "decrypt", "--key", "file:lender.pem"],
        Some(jwe.as_bytes()),
    )?;
    if plain != r#"{"number":"4111111111111111"}"# {
        return Err("JWE round trip changed the plaintext".into());
    }
    println!(
        "    decrypted {} bytes (card number masked: XXXXXXXXXXXX1111)",
        plain.len()
    );
    Ok(())
}
