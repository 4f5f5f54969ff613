//! The PKCS#11 backend's own promises, against SoftHSM: keys generated sensitive and never extractable;
//! label/id clashes refused; ambiguous and missing keys reported with what was searched; sessions that
//! survive the HSM dropping them; a wrong PIN that fails only its own key; a bounded wait for a session;
//! 4 threads x 250 signatures without an error; one audit event per operation, without PIN or data.
//!
//! Every test uses a token of this process's own, one per test (created serially on first use): SoftHSM's
//! file object store fails a `C_GenerateKeyPair` that races reads of the same token from another thread with
//! `CKR_GENERAL_ERROR` (SoftHSMv2 issue 573), so tests running in parallel never share a token. Each test is
//! skipped with a loud message unless `cargo xtask softhsm-test` set up SoftHSM.

#![cfg(feature = "pkcs11")]

mod support;

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use key_provider::{
    DecryptionScheme, EcCurve, KeyBackend, KeyError, KeyRef, KeySpec, KeyUsage, OpenOptions,
    Pkcs11Uri, SignatureScheme,
};
use keybound_test_support::pkcs11::{self as testing, TestToken};

fn token(test: &str, name: &str) -> Option<TestToken> {
    TestToken::fresh(test, name)
}

fn generate(uri: &Pkcs11Uri, spec: KeySpec) -> Arc<dyn KeyBackend> {
    key_provider::pkcs11::generate(uri, spec, &OpenOptions::new()).expect("generate")
}

/// An RSA key that signs and decrypts (the tests that exercise both on one key).
fn generate_rsa_both(uri: &Pkcs11Uri) -> Arc<dyn KeyBackend> {
    key_provider::pkcs11::generate_with_usage(
        uri,
        KeySpec::Rsa(2048),
        KeyUsage::SignAndDecrypt,
        &OpenOptions::new(),
    )
    .expect("generate")
}

/// A PIN file with `pin` in it, mode 0600.
fn pin_file(dir: &Path, name: &str, pin: &str) -> std::path::PathBuf {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("pin file");
    writeln!(f, "{pin}").expect("write pin");
    path
}

/// `uri` with its PIN taken from `pin_file` instead.
fn with_pin_file(uri: &Pkcs11Uri, pin_file: &Path) -> Pkcs11Uri {
    let text = uri.to_string();
    let (base, _) = text
        .split_once("&pin-source=")
        .expect("test URIs carry a pin-source");
    format!("{base}&pin-source=file:{}", pin_file.display())
        .parse()
        .expect("URI")
}

#[test]
fn generated_keys_are_sensitive_and_never_extractable() {
    let Some(token) = token(
        "generated_keys_are_sensitive_and_never_extractable",
        "generated",
    ) else {
        return;
    };
    for (label, spec) in [
        ("gen-rsa", KeySpec::Rsa(2048)),
        ("gen-ec", KeySpec::Ec(EcCurve::P384)),
    ] {
        let key = generate(&token.uri(label), spec);
        assert_eq!(key.backend_name(), "pkcs11");
        assert!(
            key.key_label().contains(&format!("object={label}")),
            "{}",
            key.key_label()
        );
        assert!(
            key.key_label().contains(";id=%"),
            "a random id is added: {}",
            key.key_label()
        );
        let sig = key.sign(
            SignatureScheme::ALL
                .into_iter()
                .find(|s| s.fits(key.public_key()))
                .unwrap(),
            b"m",
        );
        assert!(sig.is_ok());

        // Look at the objects through the very context the backend uses (the token is logged in).
        let ctx = testing::context(&token.module).expect("context");
        let slot = testing::slot(&token.uri(label), &OpenOptions::new()).expect("slot");
        let session = ctx.open_ro_session(slot).expect("session");
        let private = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap();
        let public = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(
            (private.len(), public.len()),
            (1, 1),
            "one pair under the label"
        );
        let attrs = session
            .get_attributes(
                private[0],
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Private,
                    AttributeType::Token,
                    AttributeType::Id,
                    AttributeType::Unwrap,
                ],
            )
            .unwrap();
        let mut id = None;
        for a in &attrs {
            match a {
                Attribute::Sensitive(v)
                | Attribute::AlwaysSensitive(v)
                | Attribute::NeverExtractable(v) => {
                    assert!(*v, "{a:?}");
                }
                Attribute::Private(v) | Attribute::Token(v) => assert!(*v, "{a:?}"),
                Attribute::Extractable(v) | Attribute::Unwrap(v) => assert!(!*v, "{a:?}"),
                Attribute::Id(v) => id = Some(v.clone()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(attrs.len(), 8);
        assert_eq!(id.as_ref().map(Vec::len), Some(8), "8 random id bytes");
        let public_id = session
            .get_attributes(public[0], &[AttributeType::Id])
            .unwrap();
        assert_eq!(
            public_id,
            vec![Attribute::Id(id.unwrap())],
            "same CKA_ID on both halves"
        );
        // The value of the private key cannot be read.
        let value = session.get_attributes(
            private[0],
            &[AttributeType::PrivateExponent, AttributeType::Value],
        );
        assert!(
            value.is_ok_and(|v| v.is_empty()),
            "sensitive attributes are not readable"
        );
    }
}

/// Item 5 of issue 12: a generated key can do what its usage says and nothing else. The token holds the
/// usage (CKA_SIGN / CKA_DECRYPT on the private key, CKA_VERIFY / CKA_ENCRYPT on the public one,
/// CKA_ALLOWED_MECHANISMS) and enforces it; keybound refuses the other use at once with a clear error. Before,
/// every RSA key was made "decrypt, sign".
#[test]
fn generated_keys_do_exactly_what_their_usage_says() {
    use cryptoki::error::{Error as CkError, RvError};
    use cryptoki::mechanism::{Mechanism, MechanismType};
    let Some(token) = token("generated_keys_do_exactly_what_their_usage_says", "usage") else {
        return;
    };
    let sign_mechanisms = [
        MechanismType::SHA256_RSA_PKCS,
        MechanismType::SHA384_RSA_PKCS,
        MechanismType::SHA512_RSA_PKCS,
        MechanismType::SHA256_RSA_PKCS_PSS,
        MechanismType::SHA384_RSA_PKCS_PSS,
        MechanismType::SHA512_RSA_PKCS_PSS,
    ];
    let ctx = testing::context(&token.module).unwrap();
    let bool_attrs = |handle, types: &[AttributeType]| -> Vec<bool> {
        let session = ctx
            .open_ro_session(testing::slot(&token.uri("x"), &OpenOptions::new()).unwrap())
            .unwrap();
        let attrs = session.get_attributes(handle, types).unwrap();
        assert_eq!(attrs.len(), types.len(), "{attrs:?}");
        attrs
            .iter()
            .map(|a| match a {
                Attribute::Sign(v)
                | Attribute::Decrypt(v)
                | Attribute::Verify(v)
                | Attribute::Encrypt(v) => *v,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let slot = testing::slot(&token.uri("x"), &OpenOptions::new()).unwrap();
    let find = |label: &str, class| {
        let session = ctx.open_ro_session(slot).unwrap();
        let found = session
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(found.len(), 1, "{label}");
        found[0]
    };
    for (label, usage, signs, decrypts) in [
        ("use-sign", KeyUsage::Sign, true, false),
        ("use-decrypt", KeyUsage::Decrypt, false, true),
        ("use-both", KeyUsage::SignAndDecrypt, true, true),
    ] {
        let generated = key_provider::pkcs11::generate_with_usage(
            &token.uri(label),
            KeySpec::Rsa(2048),
            usage,
            &OpenOptions::new(),
        )
        .expect("generate");
        let private = find(label, ObjectClass::PRIVATE_KEY);
        let public = find(label, ObjectClass::PUBLIC_KEY);
        assert_eq!(
            bool_attrs(private, &[AttributeType::Sign, AttributeType::Decrypt]),
            [signs, decrypts],
            "{label}: CKA_SIGN, CKA_DECRYPT"
        );
        assert_eq!(
            bool_attrs(public, &[AttributeType::Verify, AttributeType::Encrypt]),
            [signs, decrypts],
            "{label}: CKA_VERIFY, CKA_ENCRYPT"
        );
        let session = ctx.open_ro_session(slot).unwrap();
        let allowed = session
            .get_attributes(private, &[AttributeType::AllowedMechanisms])
            .unwrap();
        let mut expected: Vec<MechanismType> = Vec::new();
        if signs {
            expected.extend(sign_mechanisms);
        }
        if decrypts {
            expected.push(MechanismType::RSA_PKCS_OAEP);
        }
        // The token keeps them as a set (SoftHSM: sorted).
        let mut allowed = match allowed.as_slice() {
            [Attribute::AllowedMechanisms(m)] => m.clone(),
            other => panic!("{label}: {other:?}"),
        };
        allowed.sort_by_key(|m| **m);
        expected.sort_by_key(|m| **m);
        assert_eq!(allowed, expected, "{label}: CKA_ALLOWED_MECHANISMS");
        // The token enforces the mechanism list itself: raw RSA (CKM_RSA_PKCS) is in no usage's list.
        assert!(
            matches!(
                session.sign(&Mechanism::RsaPkcs, private, &[0u8; 32]),
                Err(CkError::Pkcs11(
                    RvError::MechanismInvalid | RvError::KeyFunctionNotPermitted,
                    _
                ))
            ),
            "{label}: CKM_RSA_PKCS was allowed"
        );
        drop(session);

        // keybound: the generated handle and a freshly opened one behave alike.
        let opened =
            key_provider::open(&token.key_ref(label).parse().unwrap(), &OpenOptions::new())
                .unwrap();
        for key in [&generated, &opened] {
            let signed = key.sign(SignatureScheme::RsaPssSha256, b"usage");
            if signs {
                support::assert_jsonwebtoken_verifies(
                    key.public_key(),
                    SignatureScheme::RsaPssSha256,
                    b"usage",
                    &signed.expect("sign"),
                );
            } else {
                let err = signed.unwrap_err();
                assert!(
                    matches!(err, KeyError::UsageNotPermitted { .. }),
                    "{label}: {err}"
                );
                let text = err.to_string();
                assert!(
                    text.contains("CKA_SIGN is false")
                        && text.contains("--usage sign")
                        && text.contains(label),
                    "{text}"
                );
            }
            let cek = support::random_cek();
            let ct = support::oaep_encrypt(key.public_key(), DecryptionScheme::RsaOaepSha1, &cek);
            let decrypted = key.decrypt(DecryptionScheme::RsaOaepSha1, &ct);
            if decrypts {
                assert_eq!(decrypted.expect("decrypt").as_slice(), cek.as_slice());
            } else {
                let err = decrypted.unwrap_err();
                // Not the opaque "cryptographic operation failed" of a bad ciphertext.
                assert!(
                    matches!(err, KeyError::UsageNotPermitted { .. }),
                    "{label}: {err}"
                );
                let text = err.to_string();
                assert!(
                    text.contains("CKA_DECRYPT is false") && text.contains("--usage decrypt"),
                    "{text}"
                );
            }
        }
    }

    // The token's own refusal reads the same: CKA_SIGN turned off behind keybound's back (after it read
    // the key's usage) makes C_SignInit answer CKR_KEY_FUNCTION_NOT_PERMITTED.
    let both = key_provider::open(
        &token.key_ref("use-both").parse().unwrap(),
        &OpenOptions::new(),
    )
    .unwrap();
    let rw = ctx.open_rw_session(slot).unwrap();
    rw.update_attributes(
        find("use-both", ObjectClass::PRIVATE_KEY),
        &[Attribute::Sign(false)],
    )
    .unwrap();
    drop(rw);
    let err = both
        .sign(SignatureScheme::RsaPkcs1Sha256, b"m")
        .unwrap_err();
    assert!(matches!(err, KeyError::UsageNotPermitted { .. }), "{err}");

    // The default is signing only; an EC key can only sign, and asking for more creates nothing.
    let default = generate(&token.uri("use-default"), KeySpec::Rsa(2048));
    let ct = support::oaep_encrypt(default.public_key(), DecryptionScheme::RsaOaepSha1, b"k");
    assert!(matches!(
        default.decrypt(DecryptionScheme::RsaOaepSha1, &ct),
        Err(KeyError::UsageNotPermitted { .. })
    ));
    for usage in [KeyUsage::Decrypt, KeyUsage::SignAndDecrypt] {
        let err = key_provider::pkcs11::generate_with_usage(
            &token.uri("use-ec"),
            KeySpec::Ec(EcCurve::P256),
            usage,
            &OpenOptions::new(),
        )
        .map(|_| ())
        .unwrap_err();
        assert!(matches!(err, KeyError::WrongKeyType { .. }), "{err}");
        assert!(err.to_string().contains("RSA keys only"), "{err}");
    }
    let ec = key_provider::pkcs11::generate_with_usage(
        &token.uri("use-ec"),
        KeySpec::Ec(EcCurve::P256),
        KeyUsage::Sign,
        &OpenOptions::new(),
    )
    .expect("an EC signing key (the refused attempts left no object behind)");
    ec.sign(SignatureScheme::EcdsaP256Sha256, b"m").unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let ec_private = find("use-ec", ObjectClass::PRIVATE_KEY);
    assert_eq!(
        session
            .get_attributes(ec_private, &[AttributeType::AllowedMechanisms])
            .unwrap(),
        [Attribute::AllowedMechanisms(vec![MechanismType::ECDSA])]
    );
}

#[test]
fn generate_refuses_taken_labels_and_ids_and_bad_sizes() {
    let Some(token) = token(
        "generate_refuses_taken_labels_and_ids_and_bad_sizes",
        "clashes",
    ) else {
        return;
    };
    let uri: Pkcs11Uri = token
        .key_ref("taken")
        .replace("object=taken", "object=taken;id=%7a")
        .parse()
        .unwrap();
    generate(&uri, KeySpec::Ec(EcCurve::P256));
    let again =
        key_provider::pkcs11::generate(&uri, KeySpec::Ec(EcCurve::P256), &OpenOptions::new())
            .unwrap_err();
    assert!(matches!(again, KeyError::KeyExists { .. }), "{again}");
    assert!(again.to_string().contains("'taken'"), "{again}");
    let same_id: Pkcs11Uri = token
        .key_ref("other")
        .replace("object=other", "object=other;id=%7a")
        .parse()
        .unwrap();
    let err =
        key_provider::pkcs11::generate(&same_id, KeySpec::Ec(EcCurve::P256), &OpenOptions::new())
            .unwrap_err();
    assert!(
        matches!(err, KeyError::KeyExists { .. }) && err.to_string().contains("id 7a"),
        "{err}"
    );
    let err =
        key_provider::pkcs11::generate(&token.uri("odd"), KeySpec::Rsa(1024), &OpenOptions::new())
            .unwrap_err();
    assert!(matches!(err, KeyError::InvalidKeyMaterial { .. }), "{err}");
}

/// Threads of one process generating at the same time: one label asked for by 4 threads gives exactly one
/// key (the others get `KeyExists`, never a duplicate label), and 4 different labels give 4 keys.
#[test]
fn concurrent_generation_in_one_token_never_duplicates_a_label() {
    let Some(token) = token(
        "concurrent_generation_in_one_token_never_duplicates_a_label",
        "concurrent",
    ) else {
        return;
    };
    let same = token.uri("same");
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    key_provider::pkcs11::generate(
                        &same,
                        KeySpec::Ec(EcCurve::P256),
                        &OpenOptions::new(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, KeyError::KeyExists { .. }), "{e}");
        }
    }
    let ctx = testing::context(&token.module).unwrap();
    let slot = testing::slot(&same, &OpenOptions::new()).unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let private = session
        .find_objects(&[
            Attribute::Label(b"same".to_vec()),
            Attribute::Class(ObjectClass::PRIVATE_KEY),
        ])
        .unwrap();
    assert!(
        private.len() <= 1,
        "{} private keys labelled 'same'",
        private.len()
    );
    drop(session);

    let keys: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let uri = token.uri(&format!("distinct-{i}"));
                s.spawn(move || {
                    key_provider::pkcs11::generate(&uri, KeySpec::Rsa(2048), &OpenOptions::new())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, key) in keys.into_iter().enumerate() {
        let key = key.unwrap_or_else(|e| panic!("distinct-{i}: {e}"));
        let sig = key
            .sign(SignatureScheme::RsaPkcs1Sha256, b"concurrent")
            .unwrap();
        assert!(support::jsonwebtoken_verifies(
            key.public_key(),
            SignatureScheme::RsaPkcs1Sha256,
            b"concurrent",
            &sig
        ));
    }
}

#[test]
fn open_by_key_reference_and_errors_name_what_was_searched() {
    let Some(token) = token(
        "open_by_key_reference_and_errors_name_what_was_searched",
        "by-ref",
    ) else {
        return;
    };
    let generated = generate(&token.uri("by-ref"), KeySpec::Ec(EcCurve::P256));
    let reference: KeyRef = token.key_ref("by-ref").parse().unwrap();
    let opened = key_provider::open(&reference, &OpenOptions::new()).expect("open by reference");
    assert_eq!(opened.public_key(), generated.public_key());

    // The token by its serial number instead of its label; the key by its id alone.
    let ctx = testing::context(&token.module).unwrap();
    let slot = testing::slot(&token.uri("by-ref"), &OpenOptions::new()).unwrap();
    let serial = ctx
        .get_token_info(slot)
        .unwrap()
        .serial_number()
        .trim()
        .to_owned();
    let id = generated
        .key_label()
        .split(";id=")
        .nth(1)
        .and_then(|rest| rest.split(['?', ';']).next())
        .unwrap();
    let by_serial: KeyRef = token
        .key_ref("by-ref")
        .replace(
            &format!("token={};object=by-ref", token.label),
            &format!("serial={serial};id={id}"),
        )
        .parse()
        .unwrap();
    let opened =
        key_provider::open(&by_serial, &OpenOptions::new()).expect("open by serial and id");
    assert_eq!(opened.public_key(), generated.public_key());

    // Missing key: the message names the token and the label searched.
    let missing: KeyRef = token.key_ref("no-such-key").parse().unwrap();
    let err = key_provider::open(&missing, &OpenOptions::new()).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::NotFound {
                what: "private key",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("no-such-key") && text.contains(&token.label),
        "{text}"
    );

    // Missing token: the message lists the tokens present.
    let no_token: KeyRef = token
        .key_ref("by-ref")
        .replace(&format!("token={}", token.label), "token=absent")
        .parse()
        .unwrap();
    let err = key_provider::open(&no_token, &OpenOptions::new()).unwrap_err();
    assert!(
        matches!(err, KeyError::NotFound { what: "token", .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&token.label), "{err}");

    // Two private keys under one label: an error, not a guess.
    let a = generate(&token.uri("amb-a"), KeySpec::Ec(EcCurve::P256));
    generate(&token.uri("amb-b"), KeySpec::Ec(EcCurve::P256));
    let slot = testing::slot(&token.uri("amb-a"), &OpenOptions::new()).unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let b = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"amb-b".to_vec()),
        ])
        .unwrap();
    session
        .update_attributes(b[0], &[Attribute::Label(b"amb-a".to_vec())])
        .unwrap();
    drop(session);
    let err = key_provider::open(
        &token.key_ref("amb-a").parse().unwrap(),
        &OpenOptions::new(),
    )
    .unwrap_err();
    assert!(matches!(err, KeyError::Ambiguous { count: 2, .. }), "{err}");
    // With its id as well, the reference is unique again.
    let with_id = a.key_label().to_owned();
    assert!(
        key_provider::open(&with_id.parse().unwrap(), &OpenOptions::new()).is_ok(),
        "{with_id}"
    );

    // type=cert is not a private key; pin-value is refused unless allowed.
    let cert: KeyRef = token
        .key_ref("by-ref")
        .replace("object=by-ref", "object=by-ref;type=cert")
        .parse()
        .unwrap();
    assert!(matches!(
        key_provider::open(&cert, &OpenOptions::new()),
        Err(KeyError::InvalidKeyRef { .. })
    ));
    let inline: KeyRef = token
        .key_ref("by-ref")
        .split("&pin-source=")
        .next()
        .map(|b| format!("{b}&pin-value=1234"))
        .unwrap()
        .parse()
        .unwrap();
    let err = key_provider::open(&inline, &OpenOptions::new()).unwrap_err();
    assert!(matches!(err, KeyError::PinUnavailable { .. }), "{err}");
}

#[test]
fn wrong_pin_fails_only_its_own_key() {
    let Some(token) = token("wrong_pin_fails_only_its_own_key", "pins") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = pin_file(dir.path(), "wrong.pin", "000000");

    // Before anyone logged in: the token itself rejects the PIN. One audit event says so (issue 13 item
    // 11), with the token's return code and never the PIN.
    let mut err = None;
    let events = capture_audit(|| {
        err = key_provider::pkcs11::open(
            &with_pin_file(&token.uri("pin-key"), &wrong),
            &OpenOptions::new(),
        )
        .err();
    });
    let err = err.expect("a wrong PIN is refused");
    assert!(matches!(err, KeyError::LoginFailed { .. }), "{err}");
    assert!(err.to_string().contains("CKR_PIN_INCORRECT"), "{err}");
    assert!(!err.to_string().contains("000000"));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        events[0].contains("operation=\"login\"")
            && events[0].contains("outcome=\"failure\"")
            && events[0].contains("ckr=\"CKR_PIN_INCORRECT\"")
            && events[0].contains("backend=\"pkcs11\"")
            && !events[0].contains("000000"),
        "{}",
        events[0]
    );

    // The right PIN works on the same module and token; its login is audited too.
    let mut good = None;
    let events = capture_audit(|| {
        good = Some(generate(&token.uri("pin-key"), KeySpec::Ec(EcCurve::P256)));
    });
    let good = good.unwrap();
    let logins: Vec<_> = events
        .iter()
        .filter(|e| e.contains("operation=\"login\""))
        .collect();
    assert!(
        logins.len() == 1 && logins[0].contains("outcome=\"success\""),
        "{events:#?}"
    );
    good.sign(SignatureScheme::EcdsaP256Sha256, b"before")
        .expect("right PIN signs");

    // Once logged in, a wrong PIN is still refused (the token would say ALREADY_LOGGED_IN to anything),
    // and the attempt is audited.
    let mut err = None;
    let events = capture_audit(|| {
        err = key_provider::pkcs11::open(
            &with_pin_file(&token.uri("pin-key"), &wrong),
            &OpenOptions::new(),
        )
        .err();
    });
    let err = err.expect("a wrong PIN is refused");
    assert!(matches!(err, KeyError::LoginFailed { .. }), "{err}");
    assert!(
        events.len() == 1
            && events[0].contains("operation=\"login\"")
            && events[0].contains("outcome=\"failure\""),
        "{events:#?}"
    );

    // ... and nothing was finalised or logged out: the good key keeps signing, new opens keep working.
    good.sign(SignatureScheme::EcdsaP256Sha256, b"after")
        .expect("right PIN still signs");
    key_provider::pkcs11::open(&token.uri("pin-key"), &OpenOptions::new())
        .expect("reopen with the right PIN");

    // A group-readable PIN file is refused before the token is asked.
    let loose = pin_file(dir.path(), "loose.pin", "whatever");
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let err = key_provider::pkcs11::open(
        &with_pin_file(&token.uri("pin-key"), &loose),
        &OpenOptions::new(),
    )
    .unwrap_err();
    assert!(matches!(err, KeyError::InsecurePinFile { .. }), "{err}");
}

/// Item 12 of issue 12. Login state belongs to the application, so once other code in this process has
/// logged the token in (here: a session of its own on the same module, with the right PIN), the token answers
/// `CKR_USER_ALREADY_LOGGED_IN` to any PIN. keybound used to take that answer as success on its first login,
/// and from then on opened the token's keys with any PIN at all.
#[test]
fn a_token_logged_in_by_other_code_does_not_let_a_wrong_pin_through() {
    use cryptoki::error::{Error as CkError, RvError};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::session::UserType;
    use secrecy::SecretString;
    let Some(token) = token(
        "a_token_logged_in_by_other_code_does_not_let_a_wrong_pin_through",
        "prelogin",
    ) else {
        return;
    };
    let right = SecretString::from(
        std::fs::read_to_string(&token.pin_file)
            .unwrap()
            .trim_end()
            .to_owned(),
    );
    let dir = tempfile::tempdir().unwrap();
    let wrong = pin_file(dir.path(), "wrong.pin", "000000");
    let uri = token.uri("other-code-key");

    // The other code: its own session on the process's context, logged in with the right PIN, and a key it
    // made (keybound has not logged in to this token yet: finding the slot does not log in).
    let ctx = testing::context(&token.module).unwrap();
    let slot = testing::slot(&uri, &OpenOptions::new()).unwrap();
    let other = ctx.open_rw_session(slot).unwrap();
    other.login(UserType::User, Some(&right)).unwrap();
    let label = || Attribute::Label(b"other-code-key".to_vec());
    other
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                // P-256
                Attribute::EcParams(vec![
                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                ]),
                label(),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
                label(),
            ],
        )
        .unwrap();
    // Why a second C_Login cannot check a PIN: the token does not look at it.
    let probe = ctx.open_ro_session(slot).unwrap();
    assert!(
        matches!(
            probe.login(UserType::User, Some(&SecretString::from("000000"))),
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _))
        ),
        "the token judges PINs after all; this test's premise is wrong"
    );
    drop(probe);

    // A wrong PIN: refused, and it does not disturb the other code's login.
    let err = key_provider::pkcs11::open(&with_pin_file(&uri, &wrong), &OpenOptions::new())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, KeyError::LoginFailed { .. }), "{err}");
    assert!(err.to_string().contains("cannot"), "{err}");
    assert!(!err.to_string().contains("000000"), "{err}");
    // keybound cannot tell the right PIN from a wrong one here either: refused the same way, with the remedy.
    let err = key_provider::pkcs11::open(&uri, &OpenOptions::new())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, KeyError::LoginFailed { .. }), "{err}");
    assert!(
        err.to_string().contains("before other code logs in"),
        "{err}"
    );
    let found = other
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), label()])
        .expect("the other code is still logged in");
    assert_eq!(found.len(), 1);

    // Once the other code logs out, keybound logs in itself and the token judges the PIN: the right one
    // opens the key, a wrong one is refused, whoever logs in later.
    other.logout().unwrap();
    let key = key_provider::pkcs11::open(&uri, &OpenOptions::new()).expect("the right PIN");
    key.sign(SignatureScheme::EcdsaP256Sha256, b"m").unwrap();
    other.login(UserType::User, Some(&right)).map_or_else(
        |e| {
            assert!(
                matches!(e, CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)),
                "{e}"
            )
        },
        |()| (),
    );
    let err = key_provider::pkcs11::open(&with_pin_file(&uri, &wrong), &OpenOptions::new())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, KeyError::LoginFailed { .. }), "{err}");
}

#[test]
fn signing_survives_the_hsm_dropping_sessions_and_login() {
    let Some(token) = token(
        "signing_survives_the_hsm_dropping_sessions_and_login",
        "loss",
    ) else {
        return;
    };
    let rsa = generate_rsa_both(&token.uri("loss-rsa"));
    let ec = generate(&token.uri("loss-ec"), KeySpec::Ec(EcCurve::P256));
    let slot = testing::slot(&token.uri("loss-rsa"), &OpenOptions::new()).unwrap();
    let check = |key: &Arc<dyn KeyBackend>, scheme: SignatureScheme| {
        let sig = key
            .sign(scheme, b"survive")
            .unwrap_or_else(|e| panic!("{scheme} after session loss: {e}"));
        assert!(support::jsonwebtoken_verifies(
            key.public_key(),
            scheme,
            b"survive",
            &sig
        ));
    };
    check(&rsa, SignatureScheme::RsaPssSha256);
    check(&ec, SignatureScheme::EcdsaP256Sha256);
    for round in 0..3 {
        support::close_all_sessions(&token.module, slot.id());
        let events = capture_audit(|| check(&rsa, SignatureScheme::RsaPkcs1Sha256));
        // The reconnect logs in again (one login event), then the signature's own event.
        let (logins, events): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|e| e.contains("operation=\"login\""));
        assert_eq!(logins.len(), 1, "{logins:?}");
        assert!(
            events.len() == 1
                && events[0].contains("retried=true")
                && events[0].contains("outcome=\"success\""),
            "the signature after the session loss needed (and got) a reconnect: {events:?}"
        );
        check(&ec, SignatureScheme::EcdsaP256Sha256);
        // Decryption recovers the same way.
        support::close_all_sessions(&token.module, slot.id());
        let cek = support::random_cek();
        let ct = support::oaep_encrypt(rsa.public_key(), DecryptionScheme::RsaOaepSha1, &cek);
        let plain = rsa
            .decrypt(DecryptionScheme::RsaOaepSha1, &ct)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(plain.as_slice(), cek.as_slice());
    }

    // The login alone lost (another part of the application logged out): recovered too.
    let ctx = testing::context(&token.module).unwrap();
    ctx.open_ro_session(slot).unwrap().logout().expect("logout");
    let events = capture_audit(|| check(&rsa, SignatureScheme::RsaPkcs1Sha512));
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| !e.contains("operation=\"login\""))
        .collect();
    assert!(
        events.len() == 1 && events[0].contains("retried=true"),
        "{events:?}"
    );
    check(&ec, SignatureScheme::EcdsaP256Sha256);
}

#[test]
fn four_threads_sign_250_times_each_without_an_error() {
    let Some(token) = token(
        "four_threads_sign_250_times_each_without_an_error",
        "threads",
    ) else {
        return;
    };
    let key = generate(&token.uri("busy"), KeySpec::Rsa(2048));
    let started = Instant::now();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let key = Arc::clone(&key);
            let failures = Arc::clone(&failures);
            std::thread::spawn(move || {
                let mut sigs = Vec::with_capacity(250);
                for i in 0..250 {
                    let message = format!("thread {t} message {i}");
                    match key.sign(SignatureScheme::RsaPkcs1Sha256, message.as_bytes()) {
                        Ok(sig) => sigs.push((message, sig)),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
                sigs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().expect("thread"));
    }
    let elapsed = started.elapsed();
    assert_eq!(*failures.lock().unwrap(), Vec::<String>::new());
    assert_eq!(all.len(), 1000);
    for (message, sig) in &all {
        assert!(support::jsonwebtoken_verifies(
            key.public_key(),
            SignatureScheme::RsaPkcs1Sha256,
            message.as_bytes(),
            sig
        ));
    }
    let _ = writeln!(
        std::io::stderr(),
        "1000 RS256 signatures on 4 threads in {elapsed:?}"
    );
}

#[test]
fn a_busy_pool_times_out_clearly() {
    let Some(token) = token("a_busy_pool_times_out_clearly", "pool") else {
        return;
    };
    // The first key on this token sets its pool size: one session.
    let options = OpenOptions::new()
        .pkcs11_max_sessions(1)
        .pkcs11_session_wait(Duration::from_millis(200));
    let key =
        key_provider::pkcs11::generate(&token.uri("pooled"), KeySpec::Ec(EcCurve::P256), &options)
            .unwrap();
    key.sign(SignatureScheme::EcdsaP256Sha256, b"free")
        .expect("a free session");
    let held =
        testing::hold_sessions(&token.uri("pooled"), &options, 1).expect("hold the one session");
    let started = Instant::now();
    let err = key
        .sign(SignatureScheme::EcdsaP256Sha256, b"busy")
        .unwrap_err();
    assert!(matches!(err, KeyError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "waited {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("free session"), "{err}");
    drop(held);
    key.sign(SignatureScheme::EcdsaP256Sha256, b"free again")
        .expect("the session came back");
}

#[test]
fn callers_waiting_for_a_session_are_woken_when_one_comes_back() {
    let Some(token) = token(
        "callers_waiting_for_a_session_are_woken_when_one_comes_back",
        "wake",
    ) else {
        return;
    };
    // One session for three threads: each sign but the first waits for a session to come back. A return
    // that failed to wake a waiter would leave it asleep until its wait ran out: a Timeout error.
    let options = OpenOptions::new()
        .pkcs11_max_sessions(1)
        .pkcs11_session_wait(Duration::from_secs(2));
    let key =
        key_provider::pkcs11::generate(&token.uri("shared"), KeySpec::Ec(EcCurve::P256), &options)
            .unwrap();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let key = Arc::clone(&key);
            std::thread::spawn(move || {
                (0..30)
                    .filter_map(|i| {
                        let message = format!("thread {t} message {i}");
                        key.sign(SignatureScheme::EcdsaP256Sha256, message.as_bytes())
                            .err()
                            .map(|e| e.to_string())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    assert_eq!(failures, Vec::<String>::new());
}

thread_local! {
    /// The audit events of this thread, while [`capture_audit`] runs.
    static CAPTURED: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Records audit events (target `keybound::audit`) as text into [`CAPTURED`]. Installed once as the global
/// subscriber: a thread-scoped one misses events whose callsites other test threads saw first.
struct Audit;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Audit {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
        }
        if event.metadata().target() == key_provider::pkcs11::AUDIT_TARGET {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            CAPTURED.with_borrow_mut(|c| c.as_mut().map(|events| events.push(fields.0)));
        }
    }
}

/// Runs `f` and returns the audit events it emitted on this thread.
fn capture_audit(f: impl FnOnce()) -> Vec<String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Audit))
            .expect("no other global subscriber in this test binary");
    });
    CAPTURED.set(Some(Vec::new()));
    f();
    CAPTURED.take().unwrap_or_default()
}

#[test]
fn one_audit_event_per_operation_without_pin_or_data() {
    let Some(token) = token("one_audit_event_per_operation_without_pin_or_data", "audit") else {
        return;
    };
    let pin = std::fs::read_to_string(&token.pin_file)
        .unwrap()
        .trim()
        .to_owned();
    let events = capture_audit(|| {
        let key = generate_rsa_both(&token.uri("audited"));
        key.sign(SignatureScheme::RsaPssSha384, b"SECRET-PAYLOAD")
            .unwrap();
        let ct = support::oaep_encrypt(
            key.public_key(),
            DecryptionScheme::RsaOaepSha1,
            b"SECRET-CEK-BYTES",
        );
        key.decrypt(DecryptionScheme::RsaOaepSha1, &ct).unwrap();
        let ct = support::oaep_encrypt(
            key.public_key(),
            DecryptionScheme::RsaOaepSha256,
            b"SECRET-CEK-BYTES",
        );
        let _ = key.decrypt(DecryptionScheme::RsaOaepSha256, &ct);
    });
    // The first login of this token in the process is an event of its own.
    let (logins, events): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|e| e.contains("operation=\"login\""));
    assert!(
        logins.len() == 1 && logins[0].contains("outcome=\"success\""),
        "{logins:#?}"
    );
    assert!(!logins[0].contains(&pin), "{}", logins[0]);
    assert_eq!(events.len(), 4, "{events:#?}");
    assert!(
        events[0].contains("operation=\"generate RSA-2048\"")
            && events[0].contains("usage=sign,decrypt")
            && events[0].contains("allowed_mechanisms=true")
            && events[0].contains("outcome=\"success\""),
        "{}",
        events[0]
    );
    assert!(
        events[1].contains("mechanism=\"CKM_SHA384_RSA_PKCS_PSS\"")
            && events[1].contains("latency_us="),
        "{}",
        events[1]
    );
    assert!(events[1].contains("key=label 'audited'"), "{}", events[1]);
    assert!(
        events[2].contains("operation=\"decrypt\"") && events[2].contains("outcome=\"success\""),
        "{}",
        events[2]
    );
    if events[3].contains("outcome=\"failure\"") {
        assert!(
            events[3].contains("ckr=\"CKR_"),
            "failure events carry the return code: {}",
            events[3]
        );
    }
    for e in &events {
        assert!(
            !e.contains(&pin) && !e.contains("SECRET"),
            "audit event leaks: {e}"
        );
    }
}

#[test]
fn debug_output_never_shows_the_pin() {
    let Some(token) = token("debug_output_never_shows_the_pin", "debug") else {
        return;
    };
    let pin = std::fs::read_to_string(&token.pin_file)
        .unwrap()
        .trim()
        .to_owned();
    generate(&token.uri("dbg"), KeySpec::Ec(EcCurve::P256));
    let inline = token
        .key_ref("dbg")
        .split("&pin-source=")
        .next()
        .map(|b| format!("{b}&pin-value={pin}"))
        .unwrap();
    let key = key_provider::open(
        &inline.parse().unwrap(),
        &OpenOptions::new().allow_pin_value(true),
    )
    .expect("open");
    let shown = format!(
        "{key:?} {} {}",
        key.key_label(),
        inline.parse::<KeyRef>().unwrap()
    );
    assert!(!shown.contains(&pin), "{shown}");
    assert!(shown.contains("dbg"), "{shown}");
}

#[test]
fn softhsm_2_6_refuses_rsa_oaep_256_clearly_and_does_oaep_sha1() {
    let Some(token) = token(
        "softhsm_2_6_refuses_rsa_oaep_256_clearly_and_does_oaep_sha1",
        "oaep",
    ) else {
        return;
    };
    let key = key_provider::pkcs11::generate_with_usage(
        &token.uri("oaep"),
        KeySpec::Rsa(2048),
        KeyUsage::Decrypt,
        &OpenOptions::new(),
    )
    .expect("generate");
    let cek = support::random_cek();
    let sha1 = support::oaep_encrypt(key.public_key(), DecryptionScheme::RsaOaepSha1, &cek);
    assert_eq!(
        key.decrypt(DecryptionScheme::RsaOaepSha1, &sha1)
            .expect("OAEP-SHA1")
            .as_slice(),
        cek.as_slice()
    );
    let info = testing::context(&token.module)
        .unwrap()
        .get_library_info()
        .unwrap();
    let version = info.library_version();
    if !info.manufacturer_id().contains("SoftHSM") || (version.major(), version.minor()) != (2, 6) {
        let _ = writeln!(
            std::io::stderr(),
            "not SoftHSM 2.6 ({}): OAEP-256 refusal not checked",
            info.manufacturer_id()
        );
        return;
    }
    let sha256 = support::oaep_encrypt(key.public_key(), DecryptionScheme::RsaOaepSha256, &cek);
    let err = key
        .decrypt(DecryptionScheme::RsaOaepSha256, &sha256)
        .unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::NotSupported {
                backend: "pkcs11",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("not supported by this token"),
        "{err}"
    );
}

/// Creates a key pair with `cryptoki` straight in the token (not through keybound, which only makes
/// sensitive, never-extractable keys of 2048 bits or more), logged in as the user.
fn make_raw_key_pair(
    token: &TestToken,
    label: &str,
    modulus_bits: u64,
    private_extra: &[Attribute],
) {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    // Log this process in through keybound first (a key on the same token), so the raw session shares it.
    generate(
        &token.uri(&format!("{label}-anchor")),
        KeySpec::Ec(EcCurve::P256),
    );
    let ctx = testing::context(&token.module).unwrap();
    let slot = testing::slot(&token.uri(&format!("{label}-anchor")), &OpenOptions::new()).unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let pin = std::fs::read_to_string(&token.pin_file).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(pin.trim().to_owned()))) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => panic!("login: {e}"),
    }
    let public = [
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::ModulusBits(modulus_bits.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(label.as_bytes().to_vec()),
    ];
    let mut private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sign(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(label.as_bytes().to_vec()),
    ];
    private.extend_from_slice(private_extra);
    session
        .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
        .expect("C_GenerateKeyPair");
}

/// Issue 13 item 3: an RSA-1024 key in the token opens, and signing (and decryption) are refused before
/// the token is asked, with the one size rule's message (the same as for file and env keys), and audited.
#[test]
fn rsa_1024_token_keys_are_refused_with_the_one_size_rule() {
    let Some(token) = token(
        "rsa_1024_token_keys_are_refused_with_the_one_size_rule",
        "rsa1024",
    ) else {
        return;
    };
    make_raw_key_pair(
        &token,
        "small",
        1024,
        &[Attribute::Sensitive(true), Attribute::Extractable(false)],
    );
    let key = key_provider::pkcs11::open(&token.uri("small"), &OpenOptions::new()).unwrap();
    assert_eq!(key.public_key().describe(), "RSA-1024");
    let mut err = None;
    let events = capture_audit(|| err = key.sign(SignatureScheme::RsaPkcs1Sha256, b"m").err());
    let err = err.expect("refused");
    assert!(matches!(err, KeyError::KeyTooSmall { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "RSA-1024 key too small: keybound signs only with RSA keys of 2048 bits or more"
        ),
        "{err}"
    );
    assert!(
        events.len() == 1
            && events[0].contains("outcome=\"failure\"")
            && events[0].contains("ckr=\"-\""),
        "{events:#?}"
    );
    let err = key
        .decrypt(DecryptionScheme::RsaOaepSha1, &[0; 128])
        .unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::KeyTooSmall {
                operation: "decrypts",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Issue 13 item 16: a private key whose value can leave the token opens with a warning, and is refused
/// under `require_non_extractable`; keybound's own keys pass.
#[test]
fn extractable_or_non_sensitive_keys_warn_and_can_be_refused() {
    let Some(token) = token(
        "extractable_or_non_sensitive_keys_warn_and_can_be_refused",
        "extractable",
    ) else {
        return;
    };
    make_raw_key_pair(
        &token,
        "loose",
        2048,
        &[Attribute::Extractable(true), Attribute::Sensitive(false)],
    );
    let key = key_provider::pkcs11::open(&token.uri("loose"), &OpenOptions::new()).unwrap();
    let warnings = key.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .contains("extractable (CKA_EXTRACTABLE true) and not sensitive (CKA_SENSITIVE false)"),
        "{}",
        warnings[0]
    );
    key.sign(SignatureScheme::RsaPssSha256, b"still works")
        .unwrap();
    let strict = OpenOptions::new().require_non_extractable(true);
    let err = key_provider::pkcs11::open(&token.uri("loose"), &strict).unwrap_err();
    assert!(matches!(err, KeyError::KeyExtractable { .. }), "{err:?}");
    assert!(err.to_string().contains("label 'loose'"), "{err}");
    // keybound's own keys are sensitive and never extractable: no warning, not refused.
    let own = generate(&token.uri("tight"), KeySpec::Ec(EcCurve::P256));
    assert!(own.warnings().is_empty());
    key_provider::pkcs11::open(&token.uri("tight"), &strict).unwrap();
}
