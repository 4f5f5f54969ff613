#!/usr/bin/env python3
"""Generates the hostile-token corpus (jws.tsv, jwe.tsv) from the fixed keys in ../vectors.

Each row: name <TAB> expected error kind <TAB> token. Every row must be rejected by every verify/decrypt entry
point with that kind of typed error. Victim keys: RFC 7515 A.2 (RS256), hostile_p256 (ES256), RFC 7516 A.1
(JWE). The attacker key signs tokens that carry their own jwk/jku/x5u. Re-run to regenerate (needs the
`cryptography` package); the output is committed, so tests need no Python.
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
CLAIMS = {"iss": "hostile-corpus", "sub": "victim", "exp": FAR, "iat": 1700000000}

def hdr_payload(header, claims):
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    c = claims if isinstance(claims, str) else json.dumps(claims, separators=(",", ":"))
    return b64(h) + "." + b64(c)

def rs256(key, header, claims=CLAIMS):
    si = hdr_payload(header, claims)
    return si + "." + b64(key.sign(si.encode(), padding.PKCS1v15(), hashes.SHA256()))

def es256_raw(header, claims, r, s):
    si = hdr_payload(header, claims)
    return si + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

def es256(header, claims=CLAIMS):
    si = hdr_payload(header, claims)
    r, s = utils.decode_dss_signature(ecv.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
    return si + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

def hs256(secret, header, claims=CLAIMS):
    si = hdr_payload(header, claims)
    h = hmac.HMAC(secret, hashes.SHA256()); h.update(si.encode())
    return si + "." + b64(h.finalize())

pub_pem = rsa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
pub_der = rsa.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
att_n = att.public_key().public_numbers()
att_jwk = {"kty": "RSA", "n": b64(att_n.n.to_bytes(256, "big")), "e": "AQAB"}
good = rs256(rsa, {"alg": "RS256", "typ": "JWT"})
h, p, s = good.split(".")

jws = [
    ("alg-none", "forbidden-alg", hdr_payload({"alg": "none"}, CLAIMS) + "."),
    ("alg-None", "forbidden-alg", hdr_payload({"alg": "None"}, CLAIMS) + "."),
    ("alg-NONE", "forbidden-alg", hdr_payload({"alg": "NONE"}, CLAIMS) + "."),
    ("alg-none-with-signature", "forbidden-alg", hdr_payload({"alg": "none"}, CLAIMS) + "." + s),
    ("hs256-public-key-pem-as-secret", "forbidden-alg", hs256(pub_pem, {"alg": "HS256", "typ": "JWT"})),
    ("hs256-public-key-der-as-secret", "forbidden-alg", hs256(pub_der, {"alg": "HS256", "typ": "JWT"})),
    ("kid-path-traversal", "no-key", rs256(rsa, {"alg": "RS256", "kid": "../../../../../etc/passwd"})),
    ("kid-sql-injection", "no-key", rs256(rsa, {"alg": "RS256", "kid": "x' OR '1'='1'; DROP TABLE keys; --"})),
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
    ("ecdsa-der-instead-of-raw", "bad-signature", (lambda si: si + "." + b64(ecv.sign(si.encode(), ec.ECDSA(hashes.SHA256()))))(hdr_payload({"alg": "ES256"}, CLAIMS))),
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
    ("claims-duplicate-exp", "malformed", rs256(rsa, {"alg": "RS256"}, '{"sub":"victim","exp":1,"exp":%d}' % FAR)),
    ("claims-deeply-nested", "malformed", rs256(rsa, {"alg": "RS256"}, '{"exp":%d,"a":%s}' % (FAR, "[" * 5000 + "]" * 5000))),
    ("exp-1e400", "malformed", rs256(rsa, {"alg": "RS256"}, '{"exp":1e400}')),
    ("exp-1e300", "invalid-claim", rs256(rsa, {"alg": "RS256"}, '{"exp":1e300}')),
    ("exp-2-pow-64", "invalid-claim", rs256(rsa, {"alg": "RS256"}, '{"exp":18446744073709551616}')),
    ("exp-negative", "invalid-claim", rs256(rsa, {"alg": "RS256"}, '{"exp":-1}')),
    ("exp-string", "invalid-claim", rs256(rsa, {"alg": "RS256"}, '{"exp":"%d"}' % FAR)),
    ("exp-nan-literal", "malformed", rs256(rsa, {"alg": "RS256"}, '{"exp":NaN}')),
    ("nbf-far-future", "not-yet-valid", rs256(rsa, {"alg": "RS256"}, {"exp": FAR, "nbf": FAR - 10})),
    ("expired", "expired", rs256(rsa, {"alg": "RS256"}, {"exp": 1000000000})),
    ("alg-rs256-signed-by-ec-key", "bad-signature", es256({"alg": "RS256"})),
    ("alg-unknown", "unsupported-alg", rs256(rsa, {"alg": "RS257"})),
    ("alg-missing", "malformed", rs256(rsa, {"typ": "JWT"})),
    ("alg-not-string", "malformed", rs256(rsa, {"alg": 256})),
    ("alg-eddsa", "unsupported-alg", rs256(rsa, {"alg": "EdDSA"})),
    ("signed-by-attacker", "bad-signature", rs256(att, {"alg": "RS256"})),
    ("payload-swapped", "bad-signature", h + "." + b64(json.dumps({"sub": "admin", "exp": FAR})) + "." + s),
    ("oversize-65537-bytes", "too-large", h + "." + p + "." + s + "A" * (65537 - len(good))),
]

# JWE against the RFC 7516 A.1 key (RSA-OAEP + A256GCM).
def jwe(header, cek=None, iv=None, pt=b'{"data":"x"}', tag_len=16, ek=None, tamper_tag=False):
    hh = b64(header if isinstance(header, str) else json.dumps(header, separators=(",", ":")))
    cek = cek or os.urandom(32)
    iv = iv if iv is not None else os.urandom(12)
    if ek is None:
        ek = jwe_key.encrypt(cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
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
