//! A real OpenBao server (`bao server -dev`, from keybound-test-support) for the `vault:` backend's tests:
//! key references with the token in a 0600 file (`token-source=file:`; tests never set process variables),
//! and Transit's "bring your own key" import for keys whose private half a test must know (RFC 7515 A.2).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keybound_test_support::keyservices::BaoServer;
use serde_json::json;

use super::write_tlv;

/// A running OpenBao with a token file for key references.
pub struct Bao {
    pub server: BaoServer,
    dir: tempfile::TempDir,
    token_file: PathBuf,
}

impl Bao {
    /// Starts a server for `test`, or `None` (after the loud SKIPPED line) when `bao` is not installed.
    pub fn start(test: &str) -> Option<Self> {
        let server = BaoServer::start(test)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        write_secret_file(&token_file, server.token().as_bytes());
        Some(Self {
            server,
            dir,
            token_file,
        })
    }

    /// A token file holding `token` (mode 0600), for tests of refused tokens.
    pub fn token_file_with(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        write_secret_file(&path, token.as_bytes());
        path
    }

    /// `vault:NAME?addr=ADDR&token-source=file:…` with the server's root token, to `addr` (the server's own
    /// address, or a proxy's).
    pub fn reference_at(&self, name: &str, addr: &str) -> String {
        format!(
            "vault:{name}?addr={addr}&token-source=file:{}",
            self.token_file.display()
        )
    }

    /// A reference to `name` on this server.
    pub fn reference(&self, name: &str) -> String {
        self.reference_at(name, &self.server.addr())
    }

    /// Imports an RSA private key (PKCS#1 `RSAPrivateKey` DER) into Transit as `name` (`rsa-2048`), the way
    /// Transit's BYOK documentation describes: an ephemeral AES-256 key wraps the PKCS#8 key with AES-KWP
    /// (RFC 5649), Transit's wrapping key (RSA-4096) encrypts the AES key with RSA-OAEP-SHA256, and
    /// `ciphertext` is both, concatenated, in base64.
    pub fn import_rsa_2048(&self, name: &str, pkcs1: &[u8]) {
        use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded as _};
        use aws_lc_rs::rsa::{
            OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey,
        };
        let (status, wrapping) = self
            .server
            .admin_request("GET", "transit/wrapping_key", None);
        assert_eq!(status, 200, "wrapping key: {wrapping}");
        let pem = pem::parse(
            wrapping["data"]["public_key"]
                .as_str()
                .expect("data.public_key"),
        )
        .expect("wrapping key PEM");
        let wrapping_key = OaepPublicEncryptingKey::new(
            PublicEncryptingKey::from_der(pem.contents()).expect("RSA SPKI"),
        )
        .expect("OAEP key");
        let ephemeral = super::random_cek();
        let mut wrapped_ephemeral = vec![0u8; wrapping_key.ciphertext_size()];
        let wrapped_ephemeral = wrapping_key
            .encrypt(
                &OAEP_SHA256_MGF1SHA256,
                &ephemeral,
                &mut wrapped_ephemeral,
                None,
            )
            .expect("RSA-OAEP")
            .to_vec();
        let pkcs8 = pkcs1_to_pkcs8(pkcs1);
        let mut wrapped_key = vec![0u8; pkcs8.len() + 16];
        let wrapped_key = AesKek::new(&AES_256, &ephemeral)
            .expect("AES-256 KEK")
            .wrap_with_padding(&pkcs8, &mut wrapped_key)
            .expect("AES-KWP")
            .to_vec();
        let ciphertext = STANDARD.encode([wrapped_ephemeral, wrapped_key].concat());
        let (status, answer) = self.server.admin_request(
            "POST",
            &format!("transit/keys/{name}/import"),
            Some(&json!({
                "ciphertext": ciphertext,
                "type": "rsa-2048",
                "hash_function": "SHA256",
                "exportable": false,
            })),
        );
        assert!(
            (200..300).contains(&status),
            "import answered HTTP {status}: {answer}"
        );
    }
}

fn write_secret_file(path: &std::path::Path, contents: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create secret file");
    f.write_all(contents).expect("write secret file");
}

/// PKCS#1 `RSAPrivateKey` → PKCS#8 `PrivateKeyInfo` (rsaEncryption, NULL parameters).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ENCRYPTION: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let mut algorithm = Vec::new();
    write_tlv(&mut algorithm, 0x06, &RSA_ENCRYPTION);
    write_tlv(&mut algorithm, 0x05, &[]);
    let mut body = Vec::new();
    write_tlv(&mut body, 0x02, &[0]);
    write_tlv(&mut body, 0x30, &algorithm);
    write_tlv(&mut body, 0x04, pkcs1);
    let mut out = Vec::new();
    write_tlv(&mut out, 0x30, &body);
    out
}
