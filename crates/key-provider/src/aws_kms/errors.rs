//! How a failed KMS request is judged: worth another attempt ([`Failure::Retryable`]: throttling, KMS's own
//! internal errors, 5xx, connection failures, timeouts) or final ([`Failure::Fatal`]: refused credentials, a
//! missing, disabled or wrong key, an unsupported operation), with a one-line message that never holds a
//! credential (the SDK's errors carry none; the service's messages name at most the caller's ARN).

use std::error::Error as StdError;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

use super::BACKEND;
use crate::KeyError;
use crate::remote::Failure;

/// KMS error codes that mean "slow down" or "try again": the request was not carried out.
const THROTTLED: [&str; 2] = ["ThrottlingException", "LimitExceededException"];
/// KMS error codes for a transient failure inside the service.
const TRANSIENT: [&str; 3] = [
    "KMSInternalException",
    "DependencyTimeoutException",
    "ServiceUnavailableException",
];
/// Error codes for credentials or permissions that the service refused.
const DENIED: [&str; 8] = [
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "ExpiredToken",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
];

/// What the failed request was, for the messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request<'a> {
    /// The key label (`aws-kms:alias/issuer`).
    pub(super) key: &'a str,
    /// What was asked, e.g. `signing with RSA-PSS-SHA256`.
    pub(super) operation: &'a str,
    /// Whether sending the request twice is harmless. A request that creates something (`CreateKey`) is
    /// retried only when the service says it did not carry it out (throttling).
    pub(super) idempotent: bool,
}

/// One line: the error and its sources, joined with `: `, repeated parts and line breaks removed.
pub(super) fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string().replace(['\n', '\r'], " ");
        let text = text.trim();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(text)) {
            parts.push(text.to_owned());
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Judges one failed attempt.
pub(super) fn classify<E>(err: &SdkError<E>, request: Request<'_>) -> Failure
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) if request.idempotent => {
            Failure::Retryable("the request timed out".into())
        }
        SdkError::DispatchFailure(d) => {
            // I/O and timeouts, or an error the HTTP client gave a retry kind (a connection closed without
            // an answer is "transient"). Failures before sending (no credentials) carry no kind.
            let transient = d.is_io() || d.is_timeout() || d.as_other().is_some();
            if transient && request.idempotent {
                Failure::Retryable(format!("connection failed: {}", chain(err)))
            } else {
                Failure::Fatal(cannot_send(err))
            }
        }
        SdkError::ResponseError(_) if request.idempotent => {
            Failure::Retryable(format!("the answer could not be read: {}", chain(err)))
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            service_failure(
                status,
                err.code().unwrap_or_default(),
                &one_line(err.message().unwrap_or_default()),
                request,
            )
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Failure::Fatal(KeyError::Backend {
                backend: BACKEND,
                message: format!(
                    "{} for {}: no usable answer ({}); not retried, as KMS may have carried it out: check \
                     before trying again",
                    request.operation,
                    request.key,
                    chain(err)
                ),
                source: None,
            })
        }
        _ => Failure::Fatal(cannot_send(err)),
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ").trim().to_owned()
}

/// A request that could not be made at all: no credentials, no region, a bad endpoint.
fn cannot_send(err: &(dyn StdError + 'static)) -> KeyError {
    let text = chain(err);
    let hint = if text.to_ascii_lowercase().contains("credentials") {
        " (credentials come from the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
         AWS_PROFILE and ~/.aws, SSO, web identity, or the ECS/EC2 role)"
    } else {
        ""
    };
    KeyError::Backend {
        backend: BACKEND,
        message: format!("the request to KMS could not be sent: {text}{hint}"),
        source: None,
    }
}

/// Judges an answer of the service: `status`, its error `code` (`__type`) and `message`.
pub(super) fn service_failure(
    status: u16,
    code: &str,
    message: &str,
    request: Request<'_>,
) -> Failure {
    let said = match (code.is_empty(), message.is_empty()) {
        (true, true) => format!("HTTP {status}"),
        (false, true) => format!("HTTP {status} {code}"),
        (true, false) => format!("HTTP {status}: {message}"),
        (false, false) => format!("HTTP {status} {code}: {message}"),
    };
    let throttled = THROTTLED.contains(&code) || status == 429;
    let transient = TRANSIENT.contains(&code) || status >= 500;
    if throttled || (transient && request.idempotent) {
        return Failure::Retryable(said);
    }
    Failure::Fatal(match code {
        c if DENIED.contains(&c) || status == 401 || status == 403 => KeyError::AccessDenied {
            backend: BACKEND,
            status: Some(status),
            reason: format!(
                "{}: {message}; check the AWS credentials (the standard chain) and the key policy / IAM \
                 permissions for {}",
                if code.is_empty() { "refused" } else { code },
                request.key
            ),
        },
        "NotFoundException" => KeyError::NotFound {
            backend: BACKEND,
            what: "KMS key",
            searched: format!("{} ({message})", request.key),
        },
        "DisabledException" | "KMSInvalidStateException" => KeyError::UsageNotPermitted {
            operation: request.operation.to_owned(),
            key: request.key.to_owned(),
            reason: format!(
                "{code}: {message} (KMS uses only enabled keys: enable the key, or cancel its deletion)"
            ),
        },
        "InvalidKeyUsageException" => KeyError::UsageNotPermitted {
            operation: request.operation.to_owned(),
            key: request.key.to_owned(),
            reason: format!(
                "{code}: {message} (a KMS key has one usage: SIGN_VERIFY or ENCRYPT_DECRYPT)"
            ),
        },
        "UnsupportedOperationException" => KeyError::NotSupported {
            operation: request.operation.to_owned(),
            backend: BACKEND,
            reason: format!("{code}: {message}"),
        },
        // Deliberately opaque, as for every backend: a ciphertext that does not decrypt.
        "InvalidCiphertextException" | "IncorrectKeyException" => KeyError::Crypto,
        _ => KeyError::Backend {
            backend: BACKEND,
            message: format!("{} for {} failed: {said}", request.operation, request.key),
            source: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(status: u16, code: &str, idempotent: bool) -> Result<String, KeyError> {
        let request = Request {
            key: "aws-kms:alias/issuer",
            operation: "signing with RSA-PKCS1-SHA256",
            idempotent,
        };
        match service_failure(status, code, "said the service", request) {
            Failure::Retryable(why) => Ok(why),
            Failure::Fatal(e) => Err(e),
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retried() {
        for (status, code) in [
            (400, "ThrottlingException"),
            (400, "LimitExceededException"),
            (500, "KMSInternalException"),
            (500, "DependencyTimeoutException"),
            (503, ""),
            (429, ""),
        ] {
            let why = judge(status, code, true).unwrap();
            assert!(why.starts_with(&format!("HTTP {status}")), "{why}");
        }
        // A request that creates something is retried only when it was surely not carried out.
        assert!(judge(400, "ThrottlingException", false).is_ok());
        assert!(judge(503, "", false).is_err());
    }

    #[test]
    fn refusals_are_final_and_clear() {
        for (code, needle) in [
            ("AccessDeniedException", "access denied (HTTP 400)"),
            ("UnrecognizedClientException", "access denied"),
            ("ExpiredTokenException", "access denied"),
            (
                "NotFoundException",
                "no KMS key found for aws-kms:alias/issuer",
            ),
            (
                "DisabledException",
                "is not permitted with aws-kms:alias/issuer",
            ),
            ("KMSInvalidStateException", "enable the key"),
            ("InvalidKeyUsageException", "one usage"),
            (
                "UnsupportedOperationException",
                "not supported by this backend",
            ),
            (
                "ValidationException",
                "failed: HTTP 400 ValidationException",
            ),
        ] {
            let err = judge(400, code, true).unwrap_err().to_string();
            assert!(err.contains(needle), "{code}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(matches!(
            judge(400, "InvalidCiphertextException", true),
            Err(KeyError::Crypto)
        ));
    }
}
