//! AWS KMS keys (`aws-kms:KEY[?region=REGION&endpoint=URL]`), through the official `aws-sdk-kms` and
//! `aws-config`: the key never leaves KMS; keybound asks it to sign or to decrypt.
//!
//! - **Configuration: the standard AWS chain.** Credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
//!   (and `AWS_SESSION_TOKEN`), profiles (`AWS_PROFILE`, `~/.aws`), SSO, web identity, the ECS or EC2 role,
//!   so a key reference works unchanged on a laptop and in a fleet. Region: `region=` > a key ARN's region >
//!   `AWS_REGION` / the profile / the instance's region; none is a clear error. Endpoint: `endpoint=` >
//!   `AWS_ENDPOINT_URL_KMS` > `AWS_ENDPOINT_URL` (or a profile's `endpoint_url`) > the region's; each is
//!   checked with [`check_service_url`] (plain `http://` only to loopback), except a service-specific
//!   `endpoint_url` in a profile's `services` section, which aws-config applies unseen. Credentials are the
//!   SDK's: never in a message, a log line or `Debug` output of keybound's.
//! - **One client per (region, endpoint) per process**, on the shared key-service runtime ([`crate::remote`]),
//!   so connections are reused and concurrent callers overlap their requests. The SDK's own retries are off;
//!   keybound's bounded jittered retries ([`RetryPolicy`]) handle throttling (`ThrottlingException`,
//!   `LimitExceededException`), KMS's internal errors, 5xx, connection failures and timeouts, the same way as
//!   for Transit. Refused credentials, a missing, disabled or wrong key are one-line errors at once.
//! - **Open** calls `GetPublicKey` once: the SPKI (cached, and every signature is checked against it before
//!   it is returned), the KeySpec (RSA_2048/3072/4096, ECC_NIST_P256/P384; others are refused at open), the
//!   KeyUsage (`SIGN_VERIFY` → [`KeyUsage::Sign`], `ENCRYPT_DECRYPT` → [`KeyUsage::Decrypt`], what
//!   [`KeyBackend::usage`] returns) and the algorithms the key offers. Requests then name the key by the key
//!   ARN KMS returned, so they reach the key whose public key is cached even if the alias moves.
//! - **Sign**: RS256/384/512 (`RSASSA_PKCS1_V1_5_SHA_*`), PS256/384/512 (`RSASSA_PSS_SHA_*`, whose salt KMS
//!   makes as long as the hash, as JOSE needs), ES256/ES384 (`ECDSA_SHA_256/384`; KMS answers DER, converted
//!   to JOSE's fixed-width `r || s`). A message of up to 4096 bytes is sent whole (`MessageType=RAW`); a
//!   longer one is hashed here and sent as `DIGEST`. A key with usage `ENCRYPT_DECRYPT` is refused before
//!   any request.
//! - **Decrypt** a JWE content-encryption key with an RSA key of usage `ENCRYPT_DECRYPT`: RSA-OAEP
//!   (`RSAES_OAEP_SHA_1`) and RSA-OAEP-256 (`RSAES_OAEP_SHA_256`), if the key lists them; the plaintext
//!   goes straight into a zeroizing buffer. A ciphertext KMS cannot decrypt is [`KeyError::Crypto`], opaque
//!   as for every backend.
//! - **Generate** ([`generate`]): KMS chooses key ids, so a new key is named by an alias (`alias/NAME`):
//!   an existing alias is refused, then `CreateKey` (one usage: `SIGN_VERIFY` or `ENCRYPT_DECRYPT`) and
//!   `CreateAlias`; if the alias cannot be created, the new key is scheduled for deletion (7 days).
//!
//! **Tested against moto 5.2** (`moto_server`, a local KMS), which differs from real KMS in ways this
//! backend does not paper over: moto ignores `MessageType` (it hashes a DIGEST input again, so a signature
//! over more than 4096 bytes does not verify) and signs RSA-PSS with the maximum salt length (so PS256/384/512
//! signatures do not verify as JOSE requires). Verify-after-sign catches both, and the tests assert the clear
//! [`KeyError::SignatureMismatch`] that names the likely cause. moto also cannot decrypt a ciphertext made
//! with the key's public key (it decrypts only its own format), so decryption is tested up to the request
//! keybound sends (algorithm, key id and ciphertext, seen through a recording proxy) and the one-line error
//! moto's refusal becomes; real KMS decrypts such ciphertexts.

mod errors;
mod key;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::error::ProvideErrorMetadata as _;
use aws_sdk_kms::types::{KeySpec as KmsKeySpec, KeyUsageType};

use self::errors::{Request, classify};
use self::key::{KmsKey, malformed};
use crate::audit;
use crate::remote::{self, Failure, RemoteKey, RetryPolicy};
use crate::{
    AwsKmsRef, EcCurve, KeyBackend, KeyError, KeySpec, KeyUsage, OpenOptions, PublicKey,
    check_service_url,
};

/// The backend's name in errors, logs and audit events.
pub(crate) const BACKEND: &str = "aws-kms";

/// How long a connection may take to open, and one attempt of a request in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The waiting period of a key scheduled for deletion after a failed `generate` (KMS's minimum).
const DELETION_WINDOW_DAYS: i32 = 7;

/// A client for one region and endpoint.
#[derive(Clone)]
struct Service {
    client: Client,
    /// `kms REGION` (and the endpoint when it is not the region's).
    label: String,
}

/// `(region=, endpoint=)` as asked → the client built for them.
type Clients = Mutex<HashMap<(Option<String>, Option<String>), Service>>;

static CLIENTS: OnceLock<Clients> = OnceLock::new();

/// The endpoint asked for besides the region's, checked: `endpoint=`, else `AWS_ENDPOINT_URL_KMS` (which
/// aws-config reads itself). The general `AWS_ENDPOINT_URL` (or a profile's `endpoint_url`) is checked once
/// aws-config has read it ([`service`]).
fn endpoint(r: &AwsKmsRef) -> Result<Option<String>, KeyError> {
    if let Some(e) = &r.endpoint {
        check_service_url(e, "aws-kms: `endpoint=`")?;
        return Ok(Some(e.clone()));
    }
    const VAR: &str = "AWS_ENDPOINT_URL_KMS";
    match std::env::var(VAR).ok().filter(|v| !v.trim().is_empty()) {
        Some(value) => {
            check_service_url(&value, VAR)?;
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

/// The client for `r`'s region and endpoint: made once per process, on the key-service runtime.
fn service(r: &AwsKmsRef) -> Result<Service, KeyError> {
    let endpoint = endpoint(r)?;
    let region = r
        .region
        .clone()
        .or_else(|| r.arn_region().map(str::to_owned));
    // An endpoint from the environment is part of the cache key as checked here; aws-config reads it again.
    let cache_key = (region.clone(), endpoint.clone());
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(service) = clients.get(&cache_key) {
        return Ok(service.clone());
    }
    let explicit_endpoint = r.endpoint.clone();
    let config = remote::block_on(BACKEND, async move {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(url) = explicit_endpoint {
            loader = loader.endpoint_url(url);
        }
        Ok(loader.load().await)
    })?;
    let Some(region) = config.region().map(ToString::to_string) else {
        return Err(KeyError::Backend {
            backend: BACKEND,
            message: format!(
                "no AWS region for aws-kms:{}: add `region=` to the key reference (aws-kms:{}?region=eu-west-1), \
                 name the key by its ARN, or set AWS_REGION (or a region in the AWS profile)",
                r.key, r.key
            ),
            source: None,
        });
    };
    let endpoint = match (endpoint, config.endpoint_url()) {
        (Some(url), _) => Some(url),
        (None, Some(general)) => {
            check_service_url(
                general,
                "the AWS endpoint_url (AWS_ENDPOINT_URL or the profile)",
            )?;
            Some(general.to_owned())
        }
        (None, None) => None,
    };
    let label = match &endpoint {
        Some(url) => format!("kms {region} ({url})"),
        None => format!("kms {region}"),
    };
    let service = Service {
        client: Client::new(&config),
        label,
    };
    clients.insert(cache_key, service.clone());
    Ok(service)
}

/// Opens a KMS key: one `GetPublicKey` request (retried as every request is), then every operation goes to
/// KMS.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use key_provider::{KeyRef, OpenOptions, SignatureScheme};
/// let key_ref: KeyRef = "aws-kms:alias/issuer".parse()?;
/// let key = key_provider::open(&key_ref, &OpenOptions::new())?;
/// let signature = key.sign(SignatureScheme::EcdsaP256Sha256, b"header.payload")?;
/// assert_eq!(signature.len(), 64); // JOSE r || s, converted from KMS's DER
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`KeyError::InvalidKeyRef`] for an endpoint that is not https (or http to loopback);
/// [`KeyError::Backend`] without a region or credentials; [`KeyError::AccessDenied`], [`KeyError::NotFound`],
/// [`KeyError::UsageNotPermitted`] (a disabled key) as KMS says; [`KeyError::NotSupported`] for a KeySpec or
/// KeyUsage keybound cannot use; [`KeyError::ServiceUnavailable`] when KMS keeps failing.
pub fn open(r: &AwsKmsRef, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let _ = options;
    let service = service(r)?;
    let label = r.to_string();
    let client = service.client.clone();
    let key_id = r.key.clone();
    let what = format!("GetPublicKey for {label}");
    let request_label = label.clone();
    let (output, _retries) = remote::block_on(BACKEND, async move {
        let request = client.get_public_key().key_id(key_id);
        let judged = Request {
            key: &request_label,
            operation: "reading the public key",
            idempotent: true,
        };
        remote::with_retries(BACKEND, &what, RetryPolicy::default(), || {
            let request = request.clone();
            async move { request.send().await.map_err(|e| classify(&e, judged)) }
        })
        .await
    })?;
    // moto answers only the deprecated CustomerMasterKeySpec (same values); real KMS both.
    #[allow(deprecated)]
    let key_spec = output
        .key_spec()
        .map(|s| s.as_str().to_owned())
        .or_else(|| {
            output
                .customer_master_key_spec()
                .map(|s| s.as_str().to_owned())
        })
        .ok_or_else(|| malformed("a GetPublicKey answer without a KeySpec"))?;
    let expected = spec_of(&key_spec).ok_or_else(|| KeyError::NotSupported {
        operation: format!("opening {label}"),
        backend: BACKEND,
        reason: format!(
            "its KeySpec is {key_spec}; keybound uses RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256 and \
             ECC_NIST_P384 keys (JOSE RS*, PS*, ES256, ES384 and RSA-OAEP)"
        ),
    })?;
    let usage = match output.key_usage() {
        Some(KeyUsageType::SignVerify) => KeyUsage::Sign,
        Some(KeyUsageType::EncryptDecrypt) => KeyUsage::Decrypt,
        other => {
            return Err(KeyError::NotSupported {
                operation: format!("opening {label}"),
                backend: BACKEND,
                reason: format!(
                    "its KeyUsage is {}; keybound uses SIGN_VERIFY and ENCRYPT_DECRYPT keys",
                    other.map_or("not given", KeyUsageType::as_str)
                ),
            });
        }
    };
    let spki = output
        .public_key()
        .ok_or_else(|| malformed("a GetPublicKey answer without a PublicKey"))?;
    let public = PublicKey::from_spki_der(spki.as_ref())?;
    let matches = match (expected, &public) {
        (KeySpec::Rsa(bits), PublicKey::Rsa { .. }) => public.bits() == bits,
        (KeySpec::Ec(c), PublicKey::Ec { curve, .. }) => c == *curve,
        _ => false,
    };
    if !matches {
        return Err(malformed(&format!(
            "a {} public key for a {key_spec} key",
            public.describe()
        )));
    }
    let key = KmsKey {
        client: service.client,
        key_id: output.key_id().unwrap_or(&r.key).to_owned(),
        label,
        service: service.label,
        public,
        usage,
        signing_algorithms: output
            .signing_algorithms()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        encryption_algorithms: output
            .encryption_algorithms()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        retry: RetryPolicy::default(),
    };
    tracing::debug!(key = %key.label, key_id = %key.key_id, service = %key.service, %key_spec, %usage, "KMS key opened");
    Ok(Arc::new(RemoteKey::new(key)))
}

/// The keybound spec of a KMS KeySpec, for the ones keybound uses.
fn spec_of(key_spec: &str) -> Option<KeySpec> {
    Some(match key_spec {
        "RSA_2048" => KeySpec::Rsa(2048),
        "RSA_3072" => KeySpec::Rsa(3072),
        "RSA_4096" => KeySpec::Rsa(4096),
        "ECC_NIST_P256" => KeySpec::Ec(EcCurve::P256),
        "ECC_NIST_P384" => KeySpec::Ec(EcCurve::P384),
        _ => return None,
    })
}

/// The KMS KeySpec for a keybound spec.
fn kms_spec(spec: KeySpec) -> Result<KmsKeySpec, KeyError> {
    match spec {
        KeySpec::Rsa(2048) => Ok(KmsKeySpec::Rsa2048),
        KeySpec::Rsa(3072) => Ok(KmsKeySpec::Rsa3072),
        KeySpec::Rsa(4096) => Ok(KmsKeySpec::Rsa4096),
        KeySpec::Ec(EcCurve::P256) => Ok(KmsKeySpec::EccNistP256),
        KeySpec::Ec(EcCurve::P384) => Ok(KmsKeySpec::EccNistP384),
        KeySpec::Rsa(bits) => Err(KeyError::NotSupported {
            operation: format!("generating an RSA-{bits} key"),
            backend: BACKEND,
            reason: "KMS makes RSA keys of 2048, 3072 or 4096 bits".into(),
        }),
    }
}

/// The alias name (`alias/NAME`) of an alias reference (`alias/NAME` or an alias ARN).
fn alias_name(r: &AwsKmsRef) -> Option<String> {
    if !r.is_alias() {
        return None;
    }
    let resource = if r.key.starts_with("arn:") {
        r.key.splitn(6, ':').nth(5)?
    } else {
        &r.key
    };
    resource.starts_with("alias/").then(|| resource.to_owned())
}

/// Creates a key in KMS that never leaves it and names it by the reference's alias, then opens it.
///
/// `r` must name an alias (`aws-kms:alias/NAME`): KMS chooses key ids. `usage` is one of `sign`
/// (`SIGN_VERIFY`) and `decrypt` (`ENCRYPT_DECRYPT`, RSA only): a KMS key has exactly one usage. An
/// existing alias is refused; when the alias cannot be created after the key was, the new key is scheduled
/// for deletion (7 days) and the error says so.
///
/// # Errors
/// [`KeyError::InvalidKeyRef`] for a key id or ARN; [`KeyError::NotSupported`] for `sign,decrypt` or a size
/// KMS does not make; [`KeyError::WrongKeyType`] for an EC key that should decrypt; [`KeyError::KeyExists`]
/// for an existing alias; the errors of [`open`].
pub fn generate(
    r: &AwsKmsRef,
    spec: KeySpec,
    usage: KeyUsage,
    options: &OpenOptions,
) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let Some(alias) = alias_name(r) else {
        return Err(KeyError::invalid_ref(format!(
            "`aws-kms:{}`: KMS chooses key ids; name the new key alias/NAME (e.g. aws-kms:alias/issuer)",
            r.key
        )));
    };
    usage.check(spec)?;
    let kms_usage = match usage {
        KeyUsage::Sign => KeyUsageType::SignVerify,
        KeyUsage::Decrypt => KeyUsageType::EncryptDecrypt,
        KeyUsage::SignAndDecrypt => {
            return Err(KeyError::NotSupported {
                operation: "usage `sign,decrypt`".into(),
                backend: BACKEND,
                reason: "a KMS key has exactly one usage (SIGN_VERIFY or ENCRYPT_DECRYPT): make two keys, \
                         one with --usage sign and one with --usage decrypt"
                    .into(),
            });
        }
    };
    let kms_spec = kms_spec(spec)?;
    let service = service(r)?;
    let label = r.to_string();
    let client = service.client.clone();
    let key_type = kms_spec.as_str().to_owned();
    let started = Instant::now();
    let key = label.clone();
    let created = remote::block_on(BACKEND, async move {
        create(&client, &key, &alias, kms_spec, kms_usage).await
    });
    audit::management(
        audit::Management {
            backend: BACKEND,
            service: &service.label,
            key: &label,
            operation: "generate",
            key_type: &key_type,
            usage: usage.name(),
        },
        started,
        match &created {
            Ok(()) => Ok(None),
            Err(e) => Err(e),
        },
    );
    created?;
    open(r, options)
}

/// `DescribeKey` (refuse an existing alias), `CreateKey`, `CreateAlias` (else `ScheduleKeyDeletion`).
async fn create(
    client: &Client,
    label: &str,
    alias: &str,
    spec: KmsKeySpec,
    usage: KeyUsageType,
) -> Result<(), KeyError> {
    let policy = RetryPolicy::default();
    let idempotent = Request {
        key: label,
        operation: "creating a key",
        idempotent: true,
    };
    let once = Request {
        idempotent: false,
        ..idempotent
    };
    let describe = client.describe_key().key_id(alias);
    let exists = remote::with_retries(BACKEND, &format!("DescribeKey {alias}"), policy, || {
        let describe = describe.clone();
        async move {
            match describe.send().await {
                Ok(_) => Ok(true),
                Err(e) => match classify(&e, idempotent) {
                    Failure::Fatal(KeyError::NotFound { .. }) => Ok(false),
                    other => Err(other),
                },
            }
        }
    })
    .await?
    .0;
    if exists {
        return Err(KeyError::KeyExists {
            backend: BACKEND,
            what: format!("the alias {alias} (of a key in KMS)"),
        });
    }
    let create = client
        .create_key()
        .key_spec(spec)
        .key_usage(usage.clone())
        .description(format!(
            "keybound: {label} ({}), created by keybound keys generate",
            usage.as_str()
        ));
    let (created, _) =
        remote::with_retries(BACKEND, &format!("CreateKey for {alias}"), policy, || {
            let create = create.clone();
            async move { create.send().await.map_err(|e| classify(&e, once)) }
        })
        .await?;
    let key_id = created
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .ok_or_else(|| malformed("a CreateKey answer without KeyMetadata"))?;
    let create_alias = client
        .create_alias()
        .alias_name(alias)
        .target_key_id(&key_id);
    let aliased = remote::with_retries(BACKEND, &format!("CreateAlias {alias}"), policy, || {
        let create_alias = create_alias.clone();
        async move {
            match create_alias.send().await {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some("AlreadyExistsException") => {
                    Err(Failure::Fatal(KeyError::KeyExists {
                        backend: BACKEND,
                        what: format!("the alias {alias} (created by someone else just now)"),
                    }))
                }
                Err(e) => Err(classify(
                    &e,
                    Request {
                        operation: "creating the alias",
                        ..once
                    },
                )),
            }
        }
    })
    .await;
    let Err(alias_error) = aliased else {
        tracing::info!(key = %label, %key_id, "KMS key created");
        return Ok(());
    };
    let schedule = client
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(DELETION_WINDOW_DAYS);
    let scheduled = remote::with_retries(
        BACKEND,
        &format!("ScheduleKeyDeletion {key_id}"),
        policy,
        || {
            let schedule = schedule.clone();
            async move { schedule.send().await.map_err(|e| classify(&e, idempotent)) }
        },
    )
    .await;
    let cleanup = match scheduled {
        Ok(_) => format!(
            "the key just created ({key_id}) is scheduled for deletion in {DELETION_WINDOW_DAYS} days"
        ),
        Err(e) => format!(
            "the key just created ({key_id}) has no alias and could not be scheduled for deletion ({e}); \
             delete it by hand"
        ),
    };
    Err(match alias_error {
        KeyError::KeyExists { backend, what } => KeyError::KeyExists {
            backend,
            what: format!("{what}; {cleanup}"),
        },
        KeyError::Backend { message, .. } => KeyError::Backend {
            backend: BACKEND,
            message: format!("{message}; {cleanup}"),
            source: None,
        },
        other => KeyError::Backend {
            backend: BACKEND,
            message: format!("creating the alias {alias} failed: {other}; {cleanup}"),
            source: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_name_new_keys() {
        let alias = |s: &str| alias_name(&s.parse().unwrap());
        assert_eq!(
            alias("aws-kms:alias/issuer").as_deref(),
            Some("alias/issuer")
        );
        assert_eq!(
            alias("aws-kms:arn:aws:kms:eu-west-1:111122223333:alias/issuer").as_deref(),
            Some("alias/issuer")
        );
        assert_eq!(alias("aws-kms:1234abcd-12ab-34cd-56ef-1234567890ab"), None);
        let err = generate(
            &"aws-kms:1234abcd-12ab-34cd-56ef-1234567890ab"
                .parse()
                .unwrap(),
            KeySpec::Ec(EcCurve::P256),
            KeyUsage::Sign,
            &OpenOptions::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("KMS chooses key ids; name the new key alias/NAME"),
            "{err}"
        );
    }

    #[test]
    fn one_usage_per_key_and_rsa_only_for_decryption() {
        let r: AwsKmsRef = "aws-kms:alias/new?region=us-east-1&endpoint=http://127.0.0.1:9"
            .parse()
            .unwrap();
        let err = generate(
            &r,
            KeySpec::Rsa(2048),
            KeyUsage::SignAndDecrypt,
            &OpenOptions::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("exactly one usage"), "{err}");
        let err = generate(
            &r,
            KeySpec::Ec(EcCurve::P256),
            KeyUsage::Decrypt,
            &OpenOptions::new(),
        )
        .unwrap_err();
        assert!(matches!(err, KeyError::WrongKeyType { .. }), "{err}");
        let err = generate(&r, KeySpec::Rsa(1024), KeyUsage::Sign, &OpenOptions::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("2048, 3072 or 4096"), "{err}");
    }

    #[test]
    fn only_the_key_specs_keybound_uses_open() {
        for spec in [
            "ECC_NIST_P521",
            "ECC_SECG_P256K1",
            "SM2",
            "HMAC_256",
            "SYMMETRIC_DEFAULT",
        ] {
            assert_eq!(spec_of(spec), None, "{spec}");
        }
        assert_eq!(spec_of("RSA_3072"), Some(KeySpec::Rsa(3072)));
        assert_eq!(spec_of("ECC_NIST_P384"), Some(KeySpec::Ec(EcCurve::P384)));
    }
}
