//! Enrollment data: josekit (an independent JOSE implementation on OpenSSL) decrypts our JWE with the
//! Thales test key and gets back exactly the card JSON; headers are `alg`/`enc`/`x-gto-issuerid` (+ optional
//! `x-gto-productid`, `kid`); the recipient key loads from SPKI PEM, X.509 PEM/DER and JWK; card rules
//! (27-character name, Luhn, MMYY, issuerCardRefId ≠ PAN) are enforced without echoing values; a code and
//! payload produced together always name the same card.

mod common;

use josekit::jwe::RSA_OAEP_256;
use key_provider::KeySpec;
use provisioning_signer::{
    Audience, AuthCodeRequest, AuthCodeSigner, CardData, EnrollmentEncryptor, PeerKeySource,
    PostalAddress, ProvisioningError, SecretString, Subject, load_public_key, push_provisioning,
};
use serde_json::{Value, json};

const PAN: &str = "5555555555554444";

fn card() -> CardData {
    CardData::new(
        "ref-0001",
        SecretString::from(PAN),
        SecretString::from("0829"),
        SecretString::from("JANE Q DOE"),
    )
}

fn full_card() -> CardData {
    card()
        .postal_address(
            PostalAddress::new("1 Rue de la Paix", "Paris", "75002")
                .line2("Bat. B")
                .country("FR"),
        )
        .phone_number(
            SecretString::from("612345678"),
            Some(SecretString::from("33")),
        )
        .email(SecretString::from("jane@example.com"))
}

/// Decrypts with josekit and the fixture's private key: (header JSON, plaintext).
fn josekit_decrypt(jwe: &str) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let pem = common::fixture_bytes("thales_test.key.pem");
    let decrypter = RSA_OAEP_256.decrypter_from_pem(&pem).unwrap();
    let (payload, header) = josekit::jwe::deserialize_compact(jwe, &decrypter).unwrap();
    (header.claims_set().clone(), payload)
}

fn thales() -> EnrollmentEncryptor {
    let key = load_public_key(&common::fixture_bytes("thales_test.cert.pem")).unwrap();
    EnrollmentEncryptor::new(key.key, "ISSUER0001").unwrap()
}

#[test]
fn josekit_decrypts_our_jwe_to_the_exact_card_json() {
    let encryptor = thales()
        .with_product_id("PRODUCT-42")
        .unwrap()
        .with_kid("tsh-2025")
        .unwrap();
    let card = full_card();
    let jwe = encryptor.encrypt(&card).unwrap();
    let (header, plaintext) = josekit_decrypt(&jwe);

    assert_eq!(
        Value::Object(header),
        json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "tsh-2025",
               "x-gto-issuerid": "ISSUER0001", "x-gto-productid": "PRODUCT-42"})
    );
    assert_eq!(&plaintext[..], &card.to_json().unwrap()[..]);
    let body: Value = serde_json::from_slice(&plaintext).unwrap();
    assert_eq!(
        body,
        json!({
            "issuerCardRefId": "ref-0001", "fpan": PAN, "exp": "0829", "cardHolderName": "JANE Q DOE",
            "postalAddress": {"line1": "1 Rue de la Paix", "line2": "Bat. B", "city": "Paris",
                              "postalCode": "75002", "country": "FR"},
            "phoneNumber": "612345678", "phoneNumberCountryCode": "33", "email": "jane@example.com"
        })
    );
    // The JWE does not carry the PAN in the clear anywhere.
    assert!(!jwe.contains(PAN));
}

#[test]
fn minimal_headers_and_our_own_decryption() {
    let jwe = thales().encrypt(&card()).unwrap();
    let (header, plaintext) = josekit_decrypt(&jwe);
    assert_eq!(
        Value::Object(header),
        json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "x-gto-issuerid": "ISSUER0001"})
    );
    let body: Value = serde_json::from_slice(&plaintext).unwrap();
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["issuerCardRefId", "fpan", "exp", "cardHolderName"]
    );

    // jose-core decrypts it too, through the key backend.
    let dir = tempfile::tempdir().unwrap();
    let key = common::thales_private_key(&dir);
    let out = jose_core::jwe::decrypt(&jwe, key.as_ref(), &Default::default()).unwrap();
    assert_eq!(&out.plaintext[..], &plaintext[..]);
}

#[test]
fn recipient_key_loads_from_every_accepted_form() {
    let spki = load_public_key(&common::fixture_bytes("thales_test.pub.pem")).unwrap();
    assert_eq!(spki.source, PeerKeySource::PublicKey);
    let cert = load_public_key(&common::fixture_bytes("thales_test.cert.pem")).unwrap();
    assert_eq!(cert.source, PeerKeySource::Certificate);
    assert_eq!(cert.key, spki.key);
    // Dates as `openssl x509 -dates` prints them (notAfter is a GeneralizedTime).
    assert_eq!(cert.validity, Some((1_795_364_247, 4_948_964_247)));
    let der = load_public_key(&common::fixture_bytes("thales_test.cert.der")).unwrap();
    assert_eq!(der.key, spki.key);
    let spki_der = load_public_key(&spki.key.to_spki_der()).unwrap();
    assert_eq!(spki_der.key, spki.key);

    let mut jwk = jose_core::Jwk::from_public_key(&spki.key);
    jwk.kid = Some("tsh-1".into());
    let from_jwk = load_public_key(serde_json::to_string(&jwk).unwrap().as_bytes()).unwrap();
    assert_eq!(
        (from_jwk.key, from_jwk.kid.as_deref(), from_jwk.source),
        (spki.key.clone(), Some("tsh-1"), PeerKeySource::Jwk)
    );
    let jwks = json!({"keys": [jwk]}).to_string();
    assert_eq!(load_public_key(jwks.as_bytes()).unwrap().key, spki.key);

    // A chain, leaf first (the leaf signed by a test CA): the leaf's key is used.
    let chain = load_public_key(&common::fixture_bytes("thales_test.chain.pem")).unwrap();
    assert_eq!(
        (chain.key, chain.source),
        (spki.key.clone(), PeerKeySource::Certificate)
    );
}

/// A PEM with several certificates must be a chain given leaf first: the CA first, or certificates that do
/// not chain at all, are refused rather than handing out the first certificate's key.
#[test]
fn certificate_chains_out_of_order_are_refused() {
    let chain = String::from_utf8(common::fixture_bytes("thales_test.chain.pem")).unwrap();
    let end = "-----END CERTIFICATE-----\n";
    let split = chain.find(end).unwrap() + end.len();
    let (leaf, ca) = chain.split_at(split);
    let reversed = format!("{ca}{leaf}");
    let err = load_public_key(reversed.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("not in chain order"), "{err}");
    // Two unrelated self-signed certificates are no chain either.
    let mut unrelated = common::fixture_bytes("thales_test.cert.pem");
    unrelated.extend(common::fixture_bytes("ec_test.cert.pem"));
    let err = load_public_key(&unrelated).unwrap_err();
    assert!(err.to_string().contains("not in chain order"), "{err}");
    // A certificate with a public key block after it is refused, not half-read.
    let mut mixed = common::fixture_bytes("thales_test.cert.pem");
    mixed.extend(common::fixture_bytes("thales_test.pub.pem"));
    assert!(load_public_key(&mixed).is_err());
}

#[test]
fn unusable_recipient_inputs_are_refused() {
    let err = load_public_key(&common::fixture_bytes("thales_test.key.pem")).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    assert!(load_public_key(b"hello").is_err());
    let mut der = common::fixture_bytes("thales_test.cert.der");
    der.truncate(der.len() - 10);
    assert!(
        load_public_key(&der)
            .unwrap_err()
            .to_string()
            .contains("malformed X.509")
    );

    let ec = load_public_key(&common::fixture_bytes("ec_test.cert.pem")).unwrap();
    let err = EnrollmentEncryptor::new(ec.key, "ISSUER0001").unwrap_err();
    assert!(
        err.to_string().contains("EC P-256") && err.to_string().contains("RSA"),
        "{err}"
    );
    let err = EnrollmentEncryptor::new(common::rsa_1024_public(), "ISSUER0001").unwrap_err();
    assert!(err.to_string().contains("RSA-1024"), "{err}");
    let cert = load_public_key(&common::fixture_bytes("thales_test.cert.pem")).unwrap();
    assert!(
        EnrollmentEncryptor::new(cert.key, "").is_err(),
        "x-gto-issuerid is mandatory"
    );
}

/// Every refusal names the field and never contains the PAN or other card values.
#[test]
fn card_rules_are_enforced_without_echoing_card_data() {
    let cases: Vec<(&str, CardData)> = vec![
        (
            "cardHolderName",
            CardData::new(
                "r",
                SecretString::from(PAN),
                SecretString::from("0829"),
                SecretString::from("A".repeat(28)),
            ),
        ),
        (
            "fpan",
            CardData::new(
                "r",
                SecretString::from("5555555555554445"),
                SecretString::from("0829"),
                SecretString::from("J D"),
            ),
        ),
        (
            "fpan",
            CardData::new(
                "r",
                SecretString::from("5555 5555 5555 4444"),
                SecretString::from("0829"),
                SecretString::from("J D"),
            ),
        ),
        (
            "exp",
            CardData::new(
                "r",
                SecretString::from(PAN),
                SecretString::from("1329"),
                SecretString::from("J D"),
            ),
        ),
        (
            "exp",
            CardData::new(
                "r",
                SecretString::from(PAN),
                SecretString::from("08/29"),
                SecretString::from("J D"),
            ),
        ),
        (
            "issuerCardRefId",
            CardData::new(
                PAN,
                SecretString::from(PAN),
                SecretString::from("0829"),
                SecretString::from("J D"),
            ),
        ),
        (
            "issuerCardRefId",
            CardData::new(
                "",
                SecretString::from(PAN),
                SecretString::from("0829"),
                SecretString::from("J D"),
            ),
        ),
        ("email", card().email(SecretString::from("not-an-email"))),
        (
            "phoneNumber",
            card().phone_number(SecretString::from("+33 6 12 34"), None),
        ),
        (
            "postalAddress.city",
            card().postal_address(PostalAddress::new("l1", "C".repeat(33), "75002")),
        ),
    ];
    let encryptor = thales();
    for (field, c) in cases {
        let err = encryptor.encrypt(&c).unwrap_err();
        match &err {
            ProvisioningError::InvalidField { field: f, .. } => assert_eq!(*f, field, "{err}"),
            other => panic!("{field}: expected InvalidField, got {other:?}"),
        }
        let msg = err.to_string();
        for secret in [
            PAN,
            "5555555555554445",
            "1329",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "not-an-email",
            "CCCCCCCCCC",
        ] {
            assert!(!msg.contains(secret), "{msg}");
        }
    }
    // 27 characters (not bytes) is fine.
    let name = "ÉLODIE-ANNE DE LA FONTAINE".to_owned() + "Z";
    assert_eq!(name.chars().count(), 27);
    let ok = CardData::new(
        "r",
        SecretString::from(PAN),
        SecretString::from("0829"),
        SecretString::from(name),
    );
    assert!(encryptor.encrypt(&ok).is_ok());
}

#[test]
fn card_json_errors_quote_no_values() {
    let bad_type =
        format!(r#"{{"issuerCardRefId":"r","fpan":{PAN},"exp":"0829","cardHolderName":"J"}}"#);
    let missing = r#"{"issuerCardRefId":"r","exp":"0829","cardHolderName":"J"}"#;
    let unknown = format!(
        r#"{{"issuerCardRefId":"r","fpan":"{PAN}","exp":"0829","cardHolderName":"J","cvv":"123"}}"#
    );
    let syntax = format!(r#"{{"issuerCardRefId":"r","fpan":"{PAN}"#);
    for (input, expect) in [
        (bad_type.as_str(), "wrong type"),
        (missing, "`fpan` is missing"),
        (unknown.as_str(), "unknown field"),
        (syntax.as_str(), "not valid JSON"),
    ] {
        let msg = CardData::from_json(input.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains(expect), "{msg}");
        assert!(!msg.contains("5555") && !msg.contains("123"), "{msg}");
    }
    let good =
        format!(r#"{{"issuerCardRefId":"r","fpan":"{PAN}","exp":"0829","cardHolderName":"J"}}"#);
    assert!(CardData::from_json(good.as_bytes()).is_ok());
}

#[test]
fn debug_hides_card_data() {
    let shown = format!("{:?}", full_card());
    for secret in [
        PAN,
        "0829",
        "JANE",
        "Paris",
        "612345678",
        "jane@",
        "ref-0001",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn code_and_payload_produced_together_name_the_same_card() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::new_key(&dir, "issuer.pem", KeySpec::Rsa(2048));
    let signer = AuthCodeSigner::new(key, "ISSUER0001").unwrap();
    let encryptor = thales();
    let card = card();
    let both = push_provisioning(&signer, &encryptor, &card, Audience::ApplePay, None).unwrap();
    assert_eq!(both.auth_code.claims().sub, "ref-0001");
    let (_, plaintext) = josekit_decrypt(&both.enrollment_data);
    let body: Value = serde_json::from_slice(&plaintext).unwrap();
    assert_eq!(
        body["issuerCardRefId"],
        both.auth_code.claims().sub.as_str()
    );

    // Produced separately: a code for another card, or for a tokenId, is refused.
    let other = signer
        .sign(&AuthCodeRequest::new(
            Subject::IssuerCardRefId("ref-9999".into()),
            Audience::ApplePay,
        ))
        .unwrap();
    assert!(matches!(
        encryptor.encrypt_for(&card, &other),
        Err(ProvisioningError::SubjectMismatch)
    ));
    let lcm = signer
        .sign(&AuthCodeRequest::new(
            Subject::TokenId("ref-0001".into()),
            Audience::ApplePay,
        ))
        .unwrap();
    assert!(matches!(
        encryptor.encrypt_for(&card, &lcm),
        Err(ProvisioningError::SubjectIsTokenId)
    ));
    let same = signer
        .sign(&AuthCodeRequest::new(
            Subject::IssuerCardRefId("ref-0001".into()),
            Audience::ApplePay,
        ))
        .unwrap();
    assert!(encryptor.encrypt_for(&card, &same).is_ok());

    // Invalid card data: nothing is signed.
    let bad = CardData::new(
        "ref-0001",
        SecretString::from("123"),
        SecretString::from("0829"),
        SecretString::from("J"),
    );
    assert!(matches!(
        push_provisioning(&signer, &encryptor, &bad, Audience::ApplePay, None),
        Err(ProvisioningError::InvalidField { field: "fpan", .. })
    ));
}

#[test]
fn a_peer_jwk_is_used_only_for_what_its_use_and_key_ops_allow() {
    let spki = load_public_key(&common::fixture_bytes("thales_test.pub.pem")).unwrap();
    // Keys that are not JWKs carry no marking: both purposes.
    assert!(spki.for_encryption().is_ok() && spki.for_verification().is_ok());
    let jwk = |members: Value| {
        let mut v = serde_json::to_value(jose_core::Jwk::from_public_key(&spki.key)).unwrap();
        for (k, m) in members.as_object().unwrap() {
            v[k] = m.clone();
        }
        load_public_key(v.to_string().as_bytes()).unwrap()
    };
    for (members, encrypt, verify) in [
        (json!({}), true, true),
        (json!({"use": "enc"}), true, false),
        (json!({"key_ops": ["wrapKey"]}), true, false),
        (json!({"use": "sig"}), false, true),
        (json!({"key_ops": ["verify"]}), false, true),
    ] {
        let peer = jwk(members.clone());
        match peer.for_encryption() {
            Ok(key) => {
                assert!(encrypt, "{members}: encrypted to");
                assert_eq!(key, spki.key);
                EnrollmentEncryptor::new(key, "ISSUER0001").unwrap();
            }
            Err(e) => {
                assert!(!encrypt, "{members}: {e}");
                assert!(
                    matches!(&e, ProvisioningError::UnsuitablePublicKey { reason } if reason.contains("not for encryption")),
                    "{members}: {e:?}"
                );
            }
        }
        match peer.for_verification() {
            Ok(_) => assert!(verify, "{members}: verified with"),
            Err(e) => {
                assert!(!verify, "{members}: {e}");
                assert!(
                    e.to_string().contains("not for verifying signatures"),
                    "{e}"
                );
            }
        }
    }
    // Contradicting members: refused when loaded.
    let mut v = serde_json::to_value(jose_core::Jwk::from_public_key(&spki.key)).unwrap();
    v["use"] = json!("sig");
    v["key_ops"] = json!(["encrypt"]);
    let e = load_public_key(v.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("contradict"), "{e}");
}
