//! CMS EnvelopedData (classic push card data), at the library level: round trip through the file backend
//! with the Thales test certificate and key; the recipient names the certificate's issuer and serial exactly;
//! non-RSA and short keys refused; every truncation of a valid envelope refused as malformed, and every
//! single-bit change either still decrypts (bits outside the cryptographic parts, or CBC's malleable
//! blocks) or gives one of the two documented errors — never a panic, never another error; every change of
//! the encrypted key is the one `DecryptionFailed`. (OpenSSL interoperability: crates/cli/tests/
//! provisioning_cms.rs.)

mod common;

use key_provider::{KeySpec, PublicKeyFile};
use provisioning_signer::cms::{self, Encoding, EnvelopeEncryptor, KeyTransport};
use provisioning_signer::{CardData, ProvisioningError, SecretString};

fn card() -> CardData {
    CardData::new(
        "ref-0001",
        SecretString::from("5555555555554444"),
        SecretString::from("0829"),
        SecretString::from("JANE Q DOE"),
    )
}

fn encryptor() -> EnvelopeEncryptor {
    let file = PublicKeyFile::parse(&common::fixture_bytes("thales_test.cert.pem")).unwrap();
    EnvelopeEncryptor::new(file.certificate.as_ref().unwrap()).unwrap()
}

#[test]
fn round_trip_through_the_file_backend() {
    let dir = tempfile::tempdir().unwrap();
    let thales = common::thales_private_key(&dir);
    for transport in [KeyTransport::RsaOaepSha256, KeyTransport::RsaPkcs1v15] {
        let der = encryptor()
            .with_key_transport(transport)
            .encrypt(&card())
            .unwrap();
        for encoding in [Encoding::Base64, Encoding::Hex, Encoding::Der] {
            assert_eq!(encoding.decode(&encoding.encode(&der)).unwrap(), der);
        }
        let opened = cms::decrypt(&der, thales.as_ref());
        match transport {
            KeyTransport::RsaOaepSha256 => {
                let plain = opened.unwrap();
                assert_eq!(&plain[..], &card().to_json().unwrap()[..]);
            }
            _ => assert!(
                matches!(opened, Err(ProvisioningError::CmsRefused { ref reason }) if reason.contains("PKCS1-v1_5")),
                "{opened:?}"
            ),
        }
    }
}

#[test]
fn the_recipient_is_the_certificates_issuer_and_serial() {
    let cert_der = common::fixture_bytes("thales_test.cert.der");
    let file = PublicKeyFile::parse(&cert_der).unwrap();
    let cert = file.certificate.unwrap();
    let der = encryptor().encrypt(&card()).unwrap();
    let mut issuer_and_serial = cert.issuer_der();
    let serial = cert.serial_number();
    issuer_and_serial.push(0x02);
    issuer_and_serial.push(u8::try_from(serial.len()).unwrap());
    issuer_and_serial.extend_from_slice(serial);
    assert!(
        der.windows(issuer_and_serial.len())
            .any(|w| w == issuer_and_serial.as_slice()),
        "issuer Name and serial INTEGER as in the certificate"
    );
    // Both pieces really are in the certificate, byte for byte.
    assert!(
        cert_der
            .windows(cert.issuer_der().len())
            .any(|w| w == cert.issuer_der().as_slice())
    );
}

#[test]
fn non_rsa_recipients_are_refused() {
    let file = PublicKeyFile::parse(&common::fixture_bytes("ec_test.cert.pem")).unwrap();
    let err = EnvelopeEncryptor::new(file.certificate.as_ref().unwrap()).unwrap_err();
    assert!(err.to_string().contains("EC P-256"), "{err}");
}

#[test]
fn hostile_changes_never_panic_and_fail_alike() {
    let dir = tempfile::tempdir().unwrap();
    let thales = common::thales_private_key(&dir);
    let other = common::new_key(&dir, "other.pem", KeySpec::Rsa(2048));
    let der = encryptor().encrypt(&card()).unwrap();
    let n = der.len();

    for len in 0..n {
        let r = cms::decrypt(&der[..len], thales.as_ref());
        assert!(
            matches!(r, Err(ProvisioningError::CmsRefused { .. })),
            "truncated to {len}: {r:?}"
        );
    }
    let ek = der
        .windows(4)
        .position(|w| w == [0x04, 0x82, 0x01, 0x00])
        .unwrap()
        + 4;
    let mut outcomes = [0usize; 3];
    for i in 0..n {
        let mut changed = der.clone();
        changed[i] ^= 0x01;
        match cms::decrypt(&changed, thales.as_ref()) {
            Ok(_) => outcomes[0] += 1,
            Err(ProvisioningError::CmsRefused { .. }) => outcomes[1] += 1,
            Err(ProvisioningError::DecryptionFailed) => outcomes[2] += 1,
            Err(e) => panic!("byte {i}: an unexpected error: {e}"),
        }
        if (ek..ek + 256).contains(&i) {
            assert!(
                matches!(
                    cms::decrypt(&changed, thales.as_ref()),
                    Err(ProvisioningError::DecryptionFailed)
                ),
                "encrypted key byte {i}"
            );
        }
    }
    assert!(outcomes.iter().all(|&c| c > 0), "{outcomes:?}");
    // Another key: the same answer as a damaged envelope.
    assert!(matches!(
        cms::decrypt(&der, other.as_ref()),
        Err(ProvisioningError::DecryptionFailed)
    ));
}
