#!/usr/bin/env python3
"""Generates the hostile-token corpus (jws.tsv, jwe.tsv) from the fixed keys in ../vectors.

Each row: name <TAB> expected kind <TAB> token. The `valid-*` rows (kind `valid`) are positive controls: honest
tokens of the victim keys that the verifiers must accept, so a wrong victim key or an undecryptable JWE cannot
make the corpus "pass". Every other row must be rejected by every verify/decrypt entry point with that kind of
typed error. Victim keys: RFC 7515 A.2 (RS256, kid `rsa-victim`), hostile_p256 (ES256, kid `ec-victim`),
RFC 7516 A.1 (JWE). The attacker key signs tokens that carry their own jwk/jku/x5u (and claim the victim's
kid).

Signed rows carry the victim's kid and a claim set that also fits the partner verifiers (an `aud` of an
authorization code, a Flex `flx` claim whose key is the RSA victim), so each row reaches the check it names in
those verifiers too, not only in the generic ones. Re-run to regenerate (needs the `cryptography` package);
the output is committed, so tests need no Python. Signatures by the RSA keys are deterministic; ECDSA
signatures and JWE keys, IVs and CEKs are random, so those rows change on every run.
"""
import base64, json, os, time
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
V = os.path.join(HERE, "..", "vectors")

def b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def load(name):
    return serialization.load_pem_private_key(open(os.path.join(V, name), "rb").read(), None)

rsa = load("rfc7515_a2.pem")
ecv = load("hostile_p256.pem")
att = load("hostile_attacker.pem")
jwe_key = load("rfc7516_a1.pem").public_key()
N_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
FAR = 4102444800  # 2100-01-01: the corpus stays valid-dated for decades
RSA_KID = "rsa-victim"
EC_KID = "ec-victim"

def jwk_of(key, **members):
    n = key.public_key().public_numbers()
    return dict({"kty": "RSA", "e": b64(n.e.to_bytes(3, "big")), "n": b64(n.n.to_bytes(256, "big"))}, **members)

# iss/sub/aud/iat/exp for the generic and authorization-code verifiers; `flx` (a Flex capture context's: the
# tokens endpoint and a key, here the RSA victim under its kid, marked "use":"enc" as Flex does) for
# flex-client, which verifies the RSA rows as capture contexts and, with the `valid-rs256` row as the
# context, as transient tokens.
CLAIMS = {
    "iss": "hostile-corpus",
    "sub": "victim",
    "aud": "GOOGLE_PAY",
    "exp": FAR,
    "iat": 1700000000,
    "flx": {"path": "/flex/v2/tokens", "origin": "https://hostile-corpus.invalid",
            "jwk": jwk_of(rsa, kid=RSA_KID, use="enc")},
}

def compact(v):
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))

def claims_with_exp(text):
    """CLAIMS as JSON text with `exp` replaced by `text` verbatim (for values json.dumps cannot write)."""
    c = compact(CLAIMS)
    old = '"exp":%d' % FAR
    assert old in c
    return c.replace(old, '"exp":' + text)

def hdr_payload(header, claims):
    return b64(compact(header)) + "." + b64(compact(claims))

def with_kid(header, kid):
    """A dict header gets the victim's kid unless it names one (`"kid": None`: no kid at all); string headers
    are left alone."""
    if isinstance(header, dict):
        if "kid" not in header:
            return dict(header, kid=kid)
        if header["kid"] is None:
            return {k: v for k, v in header.items() if k != "kid"}
    return header

def rs256(key, header, claims=CLAIMS):
    si = hdr_payload(with_kid(header, RSA_KID), claims)
    return si + "." + b64(key.sign(si.encode(), padding.PKCS1v15(), hashes.SHA256()))

def es256_raw(header, claims, r, s):
    si = hdr_payload(with_kid(header, EC_KID), claims)
    return si + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

def es256(header, claims=CLAIMS):
    si = hdr_payload(with_kid(header, EC_KID), claims)
    r, s = utils.decode_dss_signature(ecv.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
    return si + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

def hs256(secret, header, claims=CLAIMS):
    si = hdr_payload(with_kid(header, RSA_KID), claims)
    h = hmac.HMAC(secret, hashes.SHA256()); h.update(si.encode())
    return si + "." + b64(h.finalize())

pub_pem = rsa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
pub_der = rsa.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
att_n = att.public_key().public_numbers()
att_jwk = {"kty": "RSA", "n": b64(att_n.n.to_bytes(256, "big")), "e": "AQAB"}
good = rs256(rsa, {"alg": "RS256", "typ": "JWT"})
h, p, s = good.split(".")

jws = [
    # Positive controls: must be accepted.
    ("valid-rs256", "valid", good),
    ("valid-es256", "valid", es256({"alg": "ES256", "typ": "JWT"})),
    # Hostile rows.
    ("alg-none", "forbidden-alg", hdr_payload({"alg": "none"}, CLAIMS) + "."),
    ("alg-None", "forbidden-alg", hdr_payload({"alg": "None"}, CLAIMS) + "."),
    ("alg-NONE", "forbidden-alg", hdr_payload({"alg": "NONE"}, CLAIMS) + "."),
    ("alg-none-with-signature", "forbidden-alg", hdr_payload({"alg": "none"}, CLAIMS) + "." + s),
    ("hs256-public-key-pem-as-secret", "forbidden-alg", hs256(pub_pem, {"alg": "HS256", "typ": "JWT"})),
    ("hs256-public-key-der-as-secret", "forbidden-alg", hs256(pub_der, {"alg": "HS256", "typ": "JWT"})),
    ("kid-path-traversal", "no-key", rs256(rsa, {"alg": "RS256", "typ": "JWT", "kid": "../../../../../etc/passwd"})),
    ("kid-sql-injection", "no-key", rs256(rsa, {"alg": "RS256", "typ": "JWT", "kid": "x' OR '1'='1'; DROP TABLE keys; --"})),
    ("jwk-header-attacker-key", "bad-signature", rs256(att, {"alg": "RS256", "jwk": att_jwk})),
    ("jku-header-attacker-url", "bad-signature", rs256(att, {"alg": "RS256", "jku": "https://attacker.invalid/jwks.json"})),
    ("x5u-header-attacker-url", "bad-signature", rs256(att, {"alg": "RS256", "x5u": "https://attacker.invalid/cert.pem"})),
    ("crit-unknown", "unsupported-header", rs256(rsa, {"alg": "RS256", "crit": ["urn:example:x"], "urn:example:x": 1})),
    ("crit-registered-name", "unsupported-header", rs256(rsa, {"alg": "RS256", "crit": ["exp"]})),
    ("crit-not-array", "unsupported-header", rs256(rsa, {"alg": "RS256", "crit": "b64"})),
    ("b64-false-with-crit", "unsupported-header", rs256(rsa, {"alg": "RS256", "b64": False, "crit": ["b64"]})),
    ("b64-false", "unsupported-header", rs256(rsa, {"alg": "RS256", "b64": False})),
    ("ecdsa-r-s-zero", "bad-signature", es256_raw({"alg": "ES256"}, CLAIMS, 0, 0)),
    ("ecdsa-r-equals-n", "bad-signature", es256_raw({"alg": "ES256"}, CLAIMS, N_P256, 1)),
    ("ecdsa-s-equals-n", "bad-signature", es256_raw({"alg": "ES256"}, CLAIMS, 1, N_P256)),
    ("ecdsa-r-above-n", "bad-signature", es256_raw({"alg": "ES256"}, CLAIMS, N_P256 + 1, 1)),
    ("ecdsa-der-instead-of-raw", "bad-signature", (lambda si: si + "." + b64(ecv.sign(si.encode(), ec.ECDSA(hashes.SHA256()))))(hdr_payload({"alg": "ES256", "kid": EC_KID}, CLAIMS))),
    ("signature-one-byte-short", "bad-signature", h + "." + p + "." + b64(base64.urlsafe_b64decode(s + "==")[:-1])),
    ("signature-one-byte-long", "bad-signature", h + "." + p + "." + b64(base64.urlsafe_b64decode(s + "==") + b"\0")),
    ("signature-empty", "bad-signature", h + "." + p + "."),
    ("two-parts", "malformed", h + "." + p),
    ("one-part", "malformed", h),
    ("four-parts", "malformed", good + "." + s),
    ("five-parts", "malformed", good + ".AAAA.AAAA"),
    ("empty", "malformed", ""),
    ("dots-only", "malformed", ".."),
    ("non-base64url-char-in-header", "malformed", h[:-2] + "*" + h[-1:] + "." + p + "." + s),
    ("standard-base64-plus-slash", "malformed", h + "." + p + "." + s.replace("-", "+").replace("_", "/") + ("+" if "-" not in s and "_" not in s else "")),
    ("padding-on-payload", "malformed", h + "." + p + "==." + s),
    ("padding-on-signature", "malformed", h + "." + p + "." + s + "="),
    ("whitespace-in-payload", "malformed", h + "." + p[:10] + " " + p[10:] + "." + s),
    ("newline-in-header", "malformed", h[:5] + "\\n" + h[5:] + "." + p + "." + s),
    ("leading-space", "malformed", " " + good),
    ("header-is-array", "malformed", rs256(rsa, '["alg","RS256"]')),
    ("header-is-string", "malformed", rs256(rsa, '"RS256"')),
    ("header-is-number", "malformed", rs256(rsa, "256")),
    ("header-not-json", "malformed", rs256(rsa, "{alg:RS256}")),
    ("claims-is-array", "malformed", rs256(rsa, {"alg": "RS256"}, "[1,2,3]")),
    ("claims-is-null", "malformed", rs256(rsa, {"alg": "RS256"}, "null")),
    ("header-duplicate-alg", "malformed", rs256(rsa, '{"alg":"RS256","alg":"none"}')),
    ("claims-duplicate-exp", "malformed", rs256(rsa, {"alg": "RS256"}, compact(CLAIMS).replace('{', '{"exp":1,', 1))),
    ("claims-deeply-nested", "malformed", rs256(rsa, {"alg": "RS256"}, '{"exp":%d,"a":%s}' % (FAR, "[" * 5000 + "]" * 5000))),
    ("exp-1e400", "malformed", rs256(rsa, {"alg": "RS256"}, claims_with_exp("1e400"))),
    ("exp-1e300", "invalid-claim", rs256(rsa, {"alg": "RS256"}, claims_with_exp("1e300"))),
    ("exp-2-pow-64", "invalid-claim", rs256(rsa, {"alg": "RS256"}, claims_with_exp("18446744073709551616"))),
    ("exp-negative", "invalid-claim", rs256(rsa, {"alg": "RS256"}, claims_with_exp("-1"))),
    ("exp-string", "invalid-claim", rs256(rsa, {"alg": "RS256"}, claims_with_exp('"%d"' % FAR))),
    ("exp-nan-literal", "malformed", rs256(rsa, {"alg": "RS256"}, claims_with_exp("NaN"))),
    # No kid: flex-client has no nbf check (Flex tokens carry no nbf), and without a kid the row stops at its
    # kid check there instead of being taken for a genuine token.
    ("nbf-far-future", "not-yet-valid", rs256(rsa, {"alg": "RS256", "typ": "JWT", "kid": None}, dict(CLAIMS, nbf=FAR - 10))),
    ("expired", "expired", rs256(rsa, {"alg": "RS256", "typ": "JWT"}, dict(CLAIMS, iat=999999000, exp=1000000000))),
    ("alg-rs256-signed-by-ec-key", "bad-signature", es256({"alg": "RS256", "kid": RSA_KID})),
    ("alg-unknown", "unsupported-alg", rs256(rsa, {"alg": "RS257"})),
    ("alg-missing", "malformed", rs256(rsa, {"typ": "JWT"})),
    ("alg-not-string", "malformed", rs256(rsa, {"alg": 256})),
    ("alg-eddsa", "unsupported-alg", rs256(rsa, {"alg": "EdDSA"})),
    ("signed-by-attacker", "bad-signature", rs256(att, {"alg": "RS256"})),
    ("payload-swapped", "bad-signature", h + "." + b64(compact(dict(CLAIMS, sub="admin"))) + "." + s),
    ("oversize-65537-bytes", "too-large", h + "." + p + "." + s + "A" * (65537 - len(good))),
]

# JWE against the RFC 7516 A.1 key (RSA-OAEP + A256GCM).
def jwe(header, cek=None, iv=None, pt=b'{"data":"x"}', tag_len=16, ek=None, tamper_tag=False, oaep_hash=hashes.SHA1):
    hh = b64(header if isinstance(header, str) else json.dumps(header, separators=(",", ":")))
    cek = cek or os.urandom(32)
    iv = iv if iv is not None else os.urandom(12)
    if ek is None:
        ek = jwe_key.encrypt(cek, padding.OAEP(mgf=padding.MGF1(oaep_hash()), algorithm=oaep_hash(), label=None))
    if len(iv) == 12 and len(cek) in (16, 24, 32):
        ct = AESGCM(cek).encrypt(iv, pt, hh.encode())
        body, tag = ct[:-16], ct[-16:]
    else:
        body, tag = pt, os.urandom(16)
    tag = tag[:tag_len] if tag_len <= 16 else tag + b"\0" * (tag_len - 16)
    if tamper_tag:
        tag = bytes([tag[0] ^ 1]) + tag[1:]
    return ".".join([hh, b64(ek), b64(iv), b64(body), b64(tag)])

base = {"alg": "RSA-OAEP", "enc": "A256GCM"}
ok_jwe = jwe(base)
parts = ok_jwe.split(".")
jwe_rows = [
    # Positive controls: must decrypt to {"data":"x"}. The first is the JWE the tampered rows below are cut from.
    ("valid-rsa-oaep-a256gcm", "valid", ok_jwe),
    ("valid-rsa-oaep-256-a128gcm", "valid", jwe({"alg": "RSA-OAEP-256", "enc": "A128GCM"}, cek=os.urandom(16), oaep_hash=hashes.SHA256)),
    # Hostile rows.
    ("alg-rsa1_5", "forbidden-alg", jwe({"alg": "RSA1_5", "enc": "A256GCM"})),
    ("alg-none", "forbidden-alg", jwe({"alg": "none", "enc": "A256GCM"})),
    ("alg-dir", "forbidden-alg", jwe({"alg": "dir", "enc": "A256GCM"})),
    ("alg-unknown", "unsupported-alg", jwe({"alg": "RSA-OAEP-512", "enc": "A256GCM"})),
    ("enc-cbc-hs256", "unsupported-alg", jwe({"alg": "RSA-OAEP", "enc": "A128CBC-HS256"})),
    ("zip-def", "unsupported-header", jwe({"alg": "RSA-OAEP", "enc": "A256GCM", "zip": "DEF"})),
    ("crit-unknown", "unsupported-header", jwe({"alg": "RSA-OAEP", "enc": "A256GCM", "crit": ["x"], "x": 1})),
    ("iv-64-bits", "malformed", jwe(base, iv=os.urandom(8))),
    ("iv-128-bits", "malformed", jwe(base, iv=os.urandom(16))),
    ("iv-empty", "malformed", jwe(base, iv=b"")),
    ("tag-64-bits", "malformed", jwe(base, tag_len=8)),
    ("tag-120-bits", "malformed", jwe(base, tag_len=15)),
    ("tag-136-bits", "malformed", jwe(base, tag_len=17)),
    ("encrypted-key-truncated", "malformed", ".".join([parts[0], b64(base64.urlsafe_b64decode(parts[1] + "==")[:-1])] + parts[2:])),
    ("encrypted-key-oversized", "malformed", ".".join([parts[0], b64(base64.urlsafe_b64decode(parts[1] + "==") + b"\1")] + parts[2:])),
    ("encrypted-key-empty", "malformed", ".".join([parts[0], ""] + parts[2:])),
    ("tag-mismatch", "decryption-failed", jwe(base, tamper_tag=True)),
    ("ciphertext-flipped", "decryption-failed", ".".join(parts[:3] + [b64(bytes([base64.urlsafe_b64decode(parts[3] + "==")[0] ^ 1]) + base64.urlsafe_b64decode(parts[3] + "==")[1:]), parts[4]])),
    ("header-swapped-aad", "decryption-failed", ".".join([b64('{"alg":"RSA-OAEP","enc":"A256GCM","kid":"x"}')] + parts[1:])),
    ("cek-wrong-length", "decryption-failed", jwe(base, cek=os.urandom(16))),
    ("encrypted-key-garbage", "decryption-failed", ".".join([parts[0], b64(os.urandom(256))] + parts[2:])),
    ("four-parts", "malformed", ".".join(parts[:4])),
    ("six-parts", "malformed", ok_jwe + ".AAAA"),
    ("three-parts-jws-shaped", "malformed", ".".join(parts[:3])),
    ("padding", "malformed", ok_jwe + "=="),
    ("whitespace", "malformed", ok_jwe[:20] + " " + ok_jwe[20:]),
    ("header-is-array", "malformed", ".".join([b64("[1]")] + parts[1:])),
    ("header-duplicate-alg", "malformed", ".".join([b64('{"alg":"RSA-OAEP","alg":"RSA1_5","enc":"A256GCM"}')] + parts[1:])),
    ("enc-missing", "malformed", jwe({"alg": "RSA-OAEP"})),
    ("oversize", "too-large", ok_jwe + "A" * 70000),
]

with open(os.path.join(HERE, "jws.tsv"), "w") as f:
    f.write("# name\texpected\ttoken  (generated by generate.py; verify with rfc7515_a2.pub.pem / hostile_p256.pub.pem)\n")
    for name, kind, tok in jws:
        assert "\t" not in tok and "\n" not in tok, name
        f.write(f"{name}\t{kind}\t{tok}\n")
with open(os.path.join(HERE, "jwe.tsv"), "w") as f:
    f.write("# name\texpected\ttoken  (generated by generate.py; decrypt with rfc7516_a1.pem)\n")
    for name, kind, tok in jwe_rows:
        f.write(f"{name}\t{kind}\t{tok}\n")
print(len(jws), "JWS rows,", len(jwe_rows), "JWE rows")
