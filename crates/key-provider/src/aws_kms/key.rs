//! One opened KMS key: what `GetPublicKey` said about it (public key, KeySpec, KeyUsage, algorithms) and
//! its `Sign` / `Decrypt` requests, as [`RemoteOps`] for [`RemoteKey`](crate::remote::RemoteKey).

use std::fmt;

use aws_lc_rs::digest;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{EncryptionAlgorithmSpec, MessageType, SigningAlgorithmSpec};
use zeroize::Zeroizing;

use super::BACKEND;
use super::errors::{Request, classify};
use crate::remote::{self, Decrypted, RemoteOps, RetryPolicy, Signed};
use crate::{DecryptionScheme, KeyError, KeyUsage, PublicKey, SignatureScheme};

/// The largest message KMS signs as `MessageType=RAW`; a longer one is hashed here and sent as `DIGEST`.
pub(crate) const RAW_LIMIT: usize = 4096;

/// A KMS key, ready to sign or decrypt.
pub(super) struct KmsKey {
    pub(super) client: Client,
    /// What requests name the key by: the key ARN `GetPublicKey` returned (so every request goes to the
    /// key whose public key is cached, even if the alias is moved later), else the reference's key.
    pub(super) key_id: String,
    /// The key reference (`aws-kms:alias/issuer`).
    pub(super) label: String,
    /// `kms REGION` (and the endpoint when it is not the region's).
    pub(super) service: String,
    pub(super) public: PublicKey,
    /// `SIGN_VERIFY` → sign, `ENCRYPT_DECRYPT` → decrypt.
    pub(super) usage: KeyUsage,
    /// The key's `SigningAlgorithms` / `EncryptionAlgorithms`, as KMS spells them.
    pub(super) signing_algorithms: Vec<String>,
    pub(super) encryption_algorithms: Vec<String>,
    pub(super) retry: RetryPolicy,
}

/// No client (its configuration holds the credentials provider), no key material.
impl fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKey")
            .field("label", &self.label)
            .field("key_id", &self.key_id)
            .field("service", &self.service)
            .field("key", &self.public.describe())
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

/// KMS's name for a signature scheme.
pub(crate) fn signing_algorithm(scheme: SignatureScheme) -> SigningAlgorithmSpec {
    match scheme {
        SignatureScheme::RsaPkcs1Sha256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        SignatureScheme::RsaPkcs1Sha384 => SigningAlgorithmSpec::RsassaPkcs1V15Sha384,
        SignatureScheme::RsaPkcs1Sha512 => SigningAlgorithmSpec::RsassaPkcs1V15Sha512,
        SignatureScheme::RsaPssSha256 => SigningAlgorithmSpec::RsassaPssSha256,
        SignatureScheme::RsaPssSha384 => SigningAlgorithmSpec::RsassaPssSha384,
        SignatureScheme::RsaPssSha512 => SigningAlgorithmSpec::RsassaPssSha512,
        SignatureScheme::EcdsaP256Sha256 => SigningAlgorithmSpec::EcdsaSha256,
        SignatureScheme::EcdsaP384Sha384 => SigningAlgorithmSpec::EcdsaSha384,
    }
}

/// KMS's name for a decryption scheme.
pub(crate) fn encryption_algorithm(scheme: DecryptionScheme) -> EncryptionAlgorithmSpec {
    match scheme {
        DecryptionScheme::RsaOaepSha1 => EncryptionAlgorithmSpec::RsaesOaepSha1,
        DecryptionScheme::RsaOaepSha256 => EncryptionAlgorithmSpec::RsaesOaepSha256,
    }
}

fn hash(scheme: SignatureScheme) -> &'static digest::Algorithm {
    match scheme {
        SignatureScheme::RsaPkcs1Sha256
        | SignatureScheme::RsaPssSha256
        | SignatureScheme::EcdsaP256Sha256 => &digest::SHA256,
        SignatureScheme::RsaPkcs1Sha384
        | SignatureScheme::RsaPssSha384
        | SignatureScheme::EcdsaP384Sha384 => &digest::SHA384,
        SignatureScheme::RsaPkcs1Sha512 | SignatureScheme::RsaPssSha512 => &digest::SHA512,
    }
}

fn is_pss(scheme: SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::RsaPssSha256
            | SignatureScheme::RsaPssSha384
            | SignatureScheme::RsaPssSha512
    )
}

/// The JOSE name of a scheme, for messages.
fn jose_name(scheme: SignatureScheme) -> &'static str {
    match scheme {
        SignatureScheme::RsaPkcs1Sha256 => "RS256",
        SignatureScheme::RsaPkcs1Sha384 => "RS384",
        SignatureScheme::RsaPkcs1Sha512 => "RS512",
        SignatureScheme::RsaPssSha256 => "PS256",
        SignatureScheme::RsaPssSha384 => "PS384",
        SignatureScheme::RsaPssSha512 => "PS512",
        SignatureScheme::EcdsaP256Sha256 => "ES256",
        SignatureScheme::EcdsaP384Sha384 => "ES384",
    }
}

impl KmsKey {
    fn wrong_usage(&self, operation: &str, needed: KeyUsage) -> KeyError {
        let (has, wants) = match needed {
            KeyUsage::Decrypt => ("SIGN_VERIFY", "decrypt"),
            _ => ("ENCRYPT_DECRYPT", "sign"),
        };
        KeyError::UsageNotPermitted {
            operation: operation.to_owned(),
            key: self.label.clone(),
            reason: format!(
                "the KMS key's KeyUsage is {has}; a KMS key has exactly one usage, so use a key made for \
                 it (`keybound keys generate --key aws-kms:alias/NAME --usage {wants}`)"
            ),
        }
    }

    fn not_offered(&self, operation: String, algorithm: &str, offered: &[String]) -> KeyError {
        KeyError::NotSupported {
            operation,
            backend: BACKEND,
            reason: format!(
                "KMS key {} does not offer {algorithm} (it offers {})",
                self.label,
                if offered.is_empty() {
                    "none".to_owned()
                } else {
                    offered.join(", ")
                }
            ),
        }
    }
}

#[async_trait::async_trait]
impl RemoteOps for KmsKey {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn service(&self) -> &str {
        &self.service
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn mechanism(&self, scheme: SignatureScheme) -> String {
        signing_algorithm(scheme).as_str().to_owned()
    }

    fn decrypt_mechanism(&self, scheme: DecryptionScheme) -> String {
        encryption_algorithm(scheme).as_str().to_owned()
    }

    fn usage(&self) -> Option<KeyUsage> {
        Some(self.usage)
    }

    fn mismatch_hint(&self, scheme: SignatureScheme, message_len: usize) -> String {
        let mut hints = Vec::new();
        if is_pss(scheme) {
            hints.push(format!(
                "a KMS implementation that signs RSA-PSS with a salt other than the hash length, such as \
                 moto, cannot make JOSE {} signatures",
                jose_name(scheme)
            ));
        }
        if message_len > RAW_LIMIT {
            hints.push(format!(
                "the {message_len}-byte message was sent as its digest (MessageType=DIGEST, above KMS's \
                 {RAW_LIMIT}-byte RAW limit); a KMS implementation that hashes a DIGEST input again, such as \
                 moto, signs the wrong value"
            ));
        }
        hints.join("; ")
    }

    async fn sign(&self, scheme: SignatureScheme, message: Vec<u8>) -> Result<Signed, KeyError> {
        let operation = format!("signing with {scheme}");
        if self.usage != KeyUsage::Sign {
            return Err(self.wrong_usage(&operation, KeyUsage::Sign));
        }
        let algorithm = signing_algorithm(scheme);
        if !self
            .signing_algorithms
            .iter()
            .any(|a| a == algorithm.as_str())
        {
            return Err(self.not_offered(operation, algorithm.as_str(), &self.signing_algorithms));
        }
        let (message_type, payload) = if message.len() <= RAW_LIMIT {
            (MessageType::Raw, message)
        } else {
            let d = digest::digest(hash(scheme), &message);
            (MessageType::Digest, d.as_ref().to_vec())
        };
        let request = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(payload))
            .message_type(message_type)
            .signing_algorithm(algorithm);
        let what = format!("sign with {}", self.label);
        let judged = Request {
            key: &self.label,
            operation: &operation,
            idempotent: true,
        };
        let (output, retries) = remote::with_retries(BACKEND, &what, self.retry, || {
            let request = request.clone();
            async move { request.send().await.map_err(|e| classify(&e, judged)) }
        })
        .await?;
        let der_or_raw = output
            .signature
            .ok_or_else(|| malformed("a Sign answer without a Signature"))?
            .into_inner();
        let signature = match &self.public {
            PublicKey::Ec { curve, .. } => {
                remote::ecdsa_der_to_fixed(BACKEND, &der_or_raw, curve.coordinate_len())?
            }
            PublicKey::Rsa { n, .. } => {
                // JOSE wants the signature as wide as the modulus; leading zeros may have been dropped.
                let width = n.len();
                if der_or_raw.len() < width {
                    let mut padded = vec![0u8; width - der_or_raw.len()];
                    padded.extend_from_slice(&der_or_raw);
                    padded
                } else {
                    der_or_raw
                }
            }
        };
        Ok(Signed { signature, retries })
    }

    async fn decrypt(
        &self,
        scheme: DecryptionScheme,
        ciphertext: Vec<u8>,
    ) -> Result<Decrypted, KeyError> {
        let operation = format!("decrypting with {scheme}");
        if self.usage != KeyUsage::Decrypt {
            return Err(self.wrong_usage(&operation, KeyUsage::Decrypt));
        }
        let algorithm = encryption_algorithm(scheme);
        if !self
            .encryption_algorithms
            .iter()
            .any(|a| a == algorithm.as_str())
        {
            return Err(self.not_offered(
                operation,
                algorithm.as_str(),
                &self.encryption_algorithms,
            ));
        }
        let request = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_algorithm(algorithm);
        let what = format!("decrypt with {}", self.label);
        let judged = Request {
            key: &self.label,
            operation: &operation,
            idempotent: true,
        };
        let (mut output, retries) = remote::with_retries(BACKEND, &what, self.retry, || {
            let request = request.clone();
            async move { request.send().await.map_err(|e| classify(&e, judged)) }
        })
        .await?;
        // Moved, not copied, into the zeroizing buffer.
        let plaintext = Zeroizing::new(
            output
                .plaintext
                .take()
                .ok_or_else(|| malformed("a Decrypt answer without a Plaintext"))?
                .into_inner(),
        );
        Ok(Decrypted { plaintext, retries })
    }
}

pub(super) fn malformed(what: &str) -> KeyError {
    KeyError::Backend {
        backend: BACKEND,
        message: format!("KMS returned {what}"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_kms::config::{BehaviorVersion, Region};

    use super::*;

    /// A key with a client that points nowhere: every test here must fail before a request.
    fn key(public: PublicKey, usage: KeyUsage, signing: &[&str], encryption: &[&str]) -> KmsKey {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        KmsKey {
            client: Client::from_conf(config),
            key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            label: "aws-kms:alias/unit".into(),
            service: "kms us-east-1 (http://127.0.0.1:9)".into(),
            public,
            usage,
            signing_algorithms: signing.iter().map(|s| (*s).to_owned()).collect(),
            encryption_algorithms: encryption.iter().map(|s| (*s).to_owned()).collect(),
            retry: RetryPolicy::new(1, Duration::ZERO, Duration::ZERO),
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn rsa() -> PublicKey {
        let mut n = vec![0xc5; 256];
        n[255] |= 1;
        PublicKey::rsa(&n, &[1, 0, 1]).unwrap()
    }

    #[test]
    fn algorithms_the_key_does_not_offer_are_refused_before_a_request() {
        let k = key(rsa(), KeyUsage::Decrypt, &[], &["RSAES_OAEP_SHA_1"]);
        let err = run(k.decrypt(DecryptionScheme::RsaOaepSha256, vec![0; 256]))
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, KeyError::NotSupported { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "decrypting with RSA-OAEP-SHA256 is not supported by this backend (aws-kms): KMS key \
             aws-kms:alias/unit does not offer RSAES_OAEP_SHA_256 (it offers RSAES_OAEP_SHA_1)"
        );
        let k = key(rsa(), KeyUsage::Sign, &["RSASSA_PKCS1_V1_5_SHA_256"], &[]);
        let err = run(k.sign(SignatureScheme::RsaPssSha256, b"m".to_vec())).unwrap_err();
        assert!(
            err.to_string().contains(
                "does not offer RSASSA_PSS_SHA_256 (it offers RSASSA_PKCS1_V1_5_SHA_256)"
            ),
            "{err}"
        );
        let err = run(k.decrypt(DecryptionScheme::RsaOaepSha1, vec![0; 256]))
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, KeyError::UsageNotPermitted { .. }), "{err}");
    }

    #[test]
    fn mismatch_hints_name_the_likely_cause() {
        let k = key(rsa(), KeyUsage::Sign, &[], &[]);
        assert_eq!(
            k.mismatch_hint(SignatureScheme::RsaPkcs1Sha256, RAW_LIMIT),
            ""
        );
        assert!(
            k.mismatch_hint(SignatureScheme::RsaPssSha384, 10)
                .contains("salt other than the hash length, such as moto, cannot make JOSE PS384")
        );
        let both = k.mismatch_hint(SignatureScheme::RsaPssSha256, RAW_LIMIT + 1);
        assert!(both.contains("JOSE PS256") && both.contains("hashes a DIGEST input again"));
        assert!(!format!("{k:?}").contains("client"));
    }
}
