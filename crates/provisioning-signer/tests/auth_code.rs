//! Authorization codes: the exact header and claim shape of the Thales guide's example, verification by
//! josekit (an independent implementation, on OpenSSL) and by our own verifier, and every refusal: ttl over 300 s
//! or zero, EC keys, RSA-1024 keys, unknown audiences, empty subjects, and tokens that break the rules.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use jose_core::{JwsAlgorithm, JwsHeader};
use key_provider::{EcCurve, KeySpec};
use provisioning_signer::{
    Audience, AuthCodeRequest, AuthCodeSigner, AuthCodeVerifier, ProvisioningError, Subject,
};
use serde_json::{Value, json};

/// The example authorization code of the Thales guide (seed document), signed by an unknown key.
const SEED_EXAMPLE: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhY21lYmFuayIsInN1YiI6IjEyMyIsImF1ZCI6IkFQUExFX1BBWSIsImp0aSI6IjE4ODU5NTIxLTFmNTQtNGIxNy1hNjA0LWU0MDFmZTAzMjllZCIsImV4cCI6MTcyMzQ3NDIwNywiaWF0IjoxNzIzNDc0MDg3fQ.GGUfe8o8Uw6wl70bnO0tRgrflLAY63gLU_G_ssqBIP6-mQLO0NSgu8OGmKn2fxD91POfSS1W8aifxZMRnFQ721GBwD8UM9eDjXmglHN-l_ILYv4zEgy9ghZ7j0cif9sGObt2Zz35-21SXccK1twtvjrzAODl7XJ4KfFl8VT2OHhwsB2WT6HKYAw1uB8kPc6S3sOqB6eM3NJ6hw6mBCfSOkEp0KXeipiYmChiylCKWSM6Wv3o5YVn9_9oCi1O6Cw7Tk-F9YqU8GtGrFWNfYRL3VbgUPqIqWbzb88hbuZPC485rfiK56TxIJBbqmdQtqBHcoGWAhywCLD4zbOU3viCzQ";

fn rsa_signer(dir: &tempfile::TempDir) -> AuthCodeSigner {
    AuthCodeSigner::new(
        common::new_key(dir, "issuer.pem", KeySpec::Rsa(2048)),
        "acmebank",
    )
    .unwrap()
}

fn card(sub: &str, aud: Audience) -> AuthCodeRequest {
    AuthCodeRequest::new(Subject::IssuerCardRefId(sub.into()), aud)
}

fn keys(m: &serde_json::Map<String, Value>) -> BTreeSet<&str> {
    m.keys().map(String::as_str).collect()
}

#[test]
fn header_and_claims_have_the_seed_shape_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    let now = 1_723_474_087;
    let code = signer
        .sign_at(&card("123", Audience::ApplePay), now)
        .unwrap();
    let parts: Vec<&str> = code.as_str().split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = common::decode_part(parts[0]);
    let claims = common::decode_part(parts[1]);

    // Header: exactly typ, alg, kid — the guide's {typ, alg} plus the onboarding kid (default: thumbprint).
    let thumbprint = jose_core::thumbprint(signer.key().public_key());
    assert_eq!(
        Value::Object(header.clone()),
        json!({"typ": "JWT", "alg": "RS256", "kid": thumbprint})
    );
    let seed_header = common::decode_part(SEED_EXAMPLE.split('.').next().unwrap());
    let mut expected_members = keys(&seed_header);
    expected_members.insert("kid");
    assert_eq!(keys(&header), expected_members);
    // Members in the order of the seed token's header, then kid.
    assert_eq!(header.keys().collect::<Vec<_>>(), ["alg", "typ", "kid"]);

    // Claims: the same member set as the seed's example, in the same order, with the same lifetime.
    let seed_claims = common::decode_part(SEED_EXAMPLE.split('.').nth(1).unwrap());
    assert_eq!(
        claims.keys().collect::<Vec<_>>(),
        seed_claims.keys().collect::<Vec<_>>()
    );
    assert_eq!(claims["iss"], "acmebank");
    assert_eq!(claims["sub"], "123");
    assert_eq!(claims["aud"], "APPLE_PAY");
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 120);
    assert_eq!(
        seed_claims["exp"].as_u64().unwrap() - seed_claims["iat"].as_u64().unwrap(),
        120,
        "the default ttl is the seed's"
    );
    let jti = claims["jti"].as_str().unwrap();
    let uuid = uuid::Uuid::parse_str(jti).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
}

#[test]
fn josekit_verifies_our_codes() {
    // josekit checks the signature with OpenSSL, from the SPKI PEM: no keybound code and no aws-lc on the
    // verifying side (jsonwebtoken with its stock provider: tests/stock_jsonwebtoken.rs).
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    let code = signer.sign(&card("card-42", Audience::GooglePay)).unwrap();
    let public = signer.key().public_key();
    let (header, claims) = common::josekit_verify(public, code.as_str(), "acmebank", "GOOGLE_PAY");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], signer.kid());
    assert_eq!(claims["sub"], "card-42");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );

    // And the same library refuses it under another key, with a flipped signature bit, or another audience.
    let other = common::new_key(&dir, "other.pem", KeySpec::Rsa(2048));
    assert!(
        common::josekit_try_verify(other.public_key(), code.as_str(), "acmebank", "GOOGLE_PAY")
            .is_err()
    );
    let mut tampered = code.as_str().to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'Q' } else { 'A' });
    assert!(common::josekit_try_verify(public, &tampered, "acmebank", "GOOGLE_PAY").is_err());
    assert!(common::josekit_try_verify(public, code.as_str(), "acmebank", "APPLE_PAY").is_err());
}

#[test]
fn our_verifier_accepts_our_codes_and_checks_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir).with_kid("acme-2025-01").unwrap();
    let public = signer.key().public_key().clone();
    let code = signer
        .sign(
            &AuthCodeRequest::new(
                Subject::TokenId("DNITHE000000001".into()),
                Audience::SamsungPay,
            )
            .ttl_secs(300),
        )
        .unwrap();
    assert!(code.is_for_token_id());

    let verifier = AuthCodeVerifier::new(public.clone())
        .unwrap()
        .issuer_id("acmebank")
        .kid("acme-2025-01");
    let verified = verifier
        .clone()
        .audience(Audience::SamsungPay)
        .subject("DNITHE000000001")
        .verify(code.as_str())
        .unwrap();
    assert_eq!(verified.kid, "acme-2025-01");
    assert_eq!(verified.claims.aud, Audience::SamsungPay);
    assert_eq!(verified.claims.exp - verified.claims.iat, 300);
    assert_eq!(&verified.claims, code.claims());

    let rejected = |r: Result<_, ProvisioningError>| match r {
        Err(ProvisioningError::Rejected { reason, .. }) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    };
    // Wrong expectations.
    assert!(rejected(verifier.clone().kid("another").verify(code.as_str())).contains("kid"));
    assert!(
        rejected(
            verifier
                .clone()
                .issuer_id("otherbank")
                .verify(code.as_str())
        )
        .contains("iss")
    );
    assert!(
        rejected(
            verifier
                .clone()
                .audience(Audience::ApplePay)
                .verify(code.as_str())
        )
        .contains("aud")
    );
    // Tampered claims.
    let mut parts: Vec<String> = code.as_str().split('.').map(str::to_owned).collect();
    parts[1] = jose_core::b64::encode(
        br#"{"iss":"acmebank","sub":"x","aud":"SAMSUNG_PAY","exp":9999999999,"iat":1}"#,
    );
    assert!(rejected(verifier.verify(&parts.join("."))).contains("signature"));
    // Another key.
    let other = common::new_key(&dir, "other.pem", KeySpec::Rsa(2048));
    assert!(
        rejected(
            AuthCodeVerifier::new(other.public_key().clone())
                .unwrap()
                .verify(code.as_str())
        )
        .contains("signature")
    );
    // Expired (signed two hours ago, 60 s leeway).
    let old = signer
        .sign_at(&card("c", Audience::ApplePay), jose_core::jwt::now() - 7200)
        .unwrap();
    assert!(rejected(verifier.verify(old.as_str())).contains("expired"));
}

/// Tokens signed by the same key through jose-core directly, breaking one rule each.
#[test]
fn verifier_refuses_tokens_outside_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::new_key(&dir, "issuer.pem", KeySpec::Rsa(2048));
    let verifier = AuthCodeVerifier::new(key.public_key().clone()).unwrap();
    let now = jose_core::jwt::now();
    let good =
        json!({"iss": "acmebank", "sub": "c1", "aud": "APPLE_PAY", "exp": now + 120, "iat": now});
    let header = JwsHeader::new(JwsAlgorithm::RS256).typ("JWT").kid("k1");
    let sign = |h: &JwsHeader, c: &Value| jose_core::jwt::sign(key.as_ref(), h, c).unwrap();
    assert!(
        verifier.verify(&sign(&header, &good)).is_ok(),
        "control: a well-formed code passes"
    );

    let mut c = good.clone();
    c["exp"] = json!(now + 301);
    assert!(
        matches!(verifier.verify(&sign(&header, &c)), Err(ProvisioningError::Rejected { reason, .. }) if reason.contains("300"))
    );
    let mut c = good.clone();
    c["aud"] = json!("VISA_PAY");
    assert!(verifier.verify(&sign(&header, &c)).is_err());
    let mut c = good.clone();
    c["aud"] = json!(["APPLE_PAY"]);
    assert!(verifier.verify(&sign(&header, &c)).is_err());
    let mut c = good.clone();
    c["nonce"] = json!("x");
    assert!(verifier.verify(&sign(&header, &c)).is_err());
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("iat");
    assert!(verifier.verify(&sign(&header, &c)).is_err());
    assert!(
        verifier
            .verify(&sign(
                &JwsHeader::new(JwsAlgorithm::RS256).typ("JWT"),
                &good
            ))
            .is_err(),
        "no kid"
    );
    assert!(
        verifier
            .verify(&sign(&JwsHeader::new(JwsAlgorithm::RS256).kid("k1"), &good))
            .is_err(),
        "no typ"
    );
    assert!(
        verifier
            .verify(&sign(
                &JwsHeader::new(JwsAlgorithm::PS256).typ("JWT").kid("k1"),
                &good
            ))
            .is_err(),
        "PS256"
    );
    let mut h = header.clone();
    h.extra
        .insert("x5u".into(), json!("https://example.invalid"));
    assert!(
        verifier.verify(&sign(&h, &good)).is_err(),
        "extra header member"
    );
}

#[test]
fn ttl_over_300_and_zero_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    let err = signer
        .sign(&card("c", Audience::ApplePay).ttl_secs(301))
        .unwrap_err();
    assert!(
        matches!(err, ProvisioningError::TtlTooLong { ttl: 301, max: 300 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("at most 300"), "{err}");
    assert!(matches!(
        signer.sign(&card("c", Audience::ApplePay).ttl_secs(0)),
        Err(ProvisioningError::TtlZero)
    ));
    assert!(signer.clone().with_default_ttl(301).is_err());
    let code = signer
        .sign(&card("c", Audience::ApplePay).ttl_secs(300))
        .unwrap();
    assert_eq!(code.claims().exp - code.claims().iat, 300);
}

#[test]
fn ec_keys_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for curve in [EcCurve::P256, EcCurve::P384] {
        let key = common::new_key(&dir, &format!("ec-{curve}.pem"), KeySpec::Ec(curve));
        let err = AuthCodeSigner::new(key.clone(), "acmebank").unwrap_err();
        assert!(
            matches!(err, ProvisioningError::UnsuitableKey { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("EC {curve}")) && msg.contains("RSA") && msg.contains("2048"),
            "{msg}"
        );
        assert!(AuthCodeVerifier::new(key.public_key().clone()).is_err());
    }
}

#[test]
fn rsa_1024_keys_are_refused_before_signing() {
    // aws-lc will not load a 1024-bit private key, so a backend reporting such a public key stands in (it
    // panics if asked to sign).
    let key = Arc::new(common::FakeKey(common::rsa_1024_public()));
    let err = AuthCodeSigner::new(key, "acmebank").unwrap_err();
    let msg = err.to_string();
    // keybound's one size rule, with the message every backend and command gives.
    assert!(
        msg.starts_with(
            "RSA-1024 key too small: keybound signs only with RSA keys of 2048 bits or more"
        ),
        "{msg}"
    );
    let err = AuthCodeVerifier::new(common::rsa_1024_public()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("RSA-1024 key too small: keybound verifies only"),
        "{err}"
    );
}

#[test]
fn audiences_are_a_closed_set() {
    for a in Audience::ALL {
        assert_eq!(a.as_str().parse::<Audience>().unwrap(), a);
    }
    for bad in ["apple_pay", "ANDROID_PAY", "", "APPLE_PAY ", "VISA"] {
        let err = bad.parse::<Audience>().unwrap_err();
        assert!(
            err.to_string()
                .contains("GOOGLE_PAY, APPLE_PAY or SAMSUNG_PAY"),
            "{err}"
        );
    }
}

#[test]
fn bad_identifiers_are_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    for sub in ["", "  ", "a\nb", &"x".repeat(129)] {
        let err = signer.sign(&card(sub, Audience::ApplePay)).unwrap_err();
        assert!(
            matches!(err, ProvisioningError::InvalidField { field: "sub", .. }),
            "{err:?}"
        );
    }
    let key = common::new_key(&dir, "k2.pem", KeySpec::Rsa(2048));
    assert!(AuthCodeSigner::new(key.clone(), "").is_err());
    assert!(
        AuthCodeSigner::new(key, "acme")
            .unwrap()
            .with_kid("")
            .is_err()
    );
}

/// An issuerCardRefId `sub` follows the card data's rule (at most 48 characters), so no code is signed for a
/// reference the enrollment data would refuse; a tokenId keeps the longer identifier limit.
#[test]
fn an_issuer_card_ref_id_over_48_characters_is_refused_as_card_data_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    let at_limit = "r".repeat(48);
    let code = signer.sign(&card(&at_limit, Audience::ApplePay)).unwrap();
    assert_eq!(code.claims().sub, at_limit);
    let over = "r".repeat(49);
    let err = signer.sign(&card(&over, Audience::ApplePay)).unwrap_err();
    assert!(
        matches!(&err, ProvisioningError::InvalidField { field: "sub", reason } if reason.contains("48")),
        "{err:?}"
    );
    assert!(!err.to_string().contains(&over), "{err}");
    // The same rule as the card data's issuerCardRefId (one check for both).
    let card_err = provisioning_signer::card::check_issuer_card_ref_id(&over).unwrap_err();
    assert!(
        card_err.to_string().contains("at most 48 characters"),
        "{card_err}"
    );
    assert!(err.to_string().contains("at most 48 characters"), "{err}");
    // A tokenId is not an issuerCardRefId.
    let token = AuthCodeRequest::new(Subject::TokenId(over.clone()), Audience::ApplePay);
    assert_eq!(signer.sign(&token).unwrap().claims().sub, over);
}

#[test]
fn jti_is_unique_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    let a = signer.sign(&card("c", Audience::ApplePay)).unwrap();
    let b = signer.sign(&card("c", Audience::ApplePay)).unwrap();
    assert_ne!(a.claims().jti, b.claims().jti);
    let no_jti = signer
        .with_jti(false)
        .sign(&card("c", Audience::ApplePay))
        .unwrap();
    let claims = common::decode_part(no_jti.as_str().split('.').nth(1).unwrap());
    assert!(!claims.contains_key("jti"));
}

#[test]
fn debug_output_hides_token_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    let code = signer
        .sign(&card("secret-card-ref", Audience::ApplePay))
        .unwrap();
    let shown = format!(
        "{code:?} {:?}",
        Subject::IssuerCardRefId("secret-card-ref".into())
    );
    assert!(
        !shown.contains(code.as_str().split('.').nth(2).unwrap()),
        "{shown}"
    );
    assert!(!shown.contains("secret-card-ref"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_signing_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    let code = signer
        .sign_async(&card("c-async", Audience::GooglePay))
        .await
        .unwrap();
    let verified = AuthCodeVerifier::new(signer.key().public_key().clone())
        .unwrap()
        .verify(code.as_str())
        .unwrap();
    assert_eq!(verified.claims.sub, "c-async");
}

#[test]
fn a_sub_that_looks_like_a_card_number_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let signer = rsa_signer(&dir);
    for pan in [
        "4111111111111111",
        "5555555555554444",
        "4222222222222",
        "6011000990139424",
    ] {
        for subject in [
            Subject::IssuerCardRefId(pan.into()),
            Subject::TokenId(pan.into()),
        ] {
            let kind = subject.kind();
            let request = AuthCodeRequest::new(subject, Audience::GooglePay);
            let e = signer.sign(&request).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(&e, ProvisioningError::InvalidField { field: "sub", .. }),
                "{pan} ({kind}): {e:?}"
            );
            assert!(msg.contains("card number"), "{msg}");
            assert!(msg.contains(kind), "the message names what sub is: {msg}");
            assert!(
                !format!("{msg} {e:?}").contains(pan),
                "echoes the PAN: {msg}"
            );
            assert!(signer.claims_at(&request, 1_700_000_000).is_err());
            let async_result = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(signer.sign_async(&request));
            assert!(matches!(
                async_result,
                Err(ProvisioningError::InvalidField { field: "sub", .. })
            ));
        }
    }
    // Look-alikes that are not card numbers are signed: Luhn fails, too short or long, not only digits.
    for sub in [
        "4111111111111112",
        "411111111111",
        "41111111111111111110",
        "card-4111111111111111",
        "DNITHE000001",
    ] {
        signer
            .sign(&card(sub, Audience::ApplePay))
            .unwrap_or_else(|e| panic!("{sub}: {e}"));
    }
}
