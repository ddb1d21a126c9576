#!/usr/bin/env python3
"""Independent generator of signed_vectors.json: the keyed audit chain's
record signature input, record signatures and a checkpoint, computed with
Python's hashlib and the pyca/cryptography Ed25519 (not dcaas code).
Run: python3 signed_vectors.py > signed_vectors.json"""
import hashlib, json, struct
from datetime import datetime, timezone
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

def field(b): return struct.pack(">I", len(b)) + b
def u64(n): return struct.pack(">Q", n & 0xFFFFFFFFFFFFFFFF)

def ns(ts):
    d = datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    frac = ts[19:-1]  # ".123456" or ""
    n = int(d.timestamp()) * 10**9
    if frac:
        n += int((frac[1:] + "000000000")[:9])
    return n

seed = bytes(range(32))
key = Ed25519PrivateKey.from_private_bytes(seed)
pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
key_id = "ed25519:" + hashlib.sha256(pub).digest()[:8].hex()

records = [
    dict(seq=1, time="2026-04-01T10:00:00Z", caller="kms", role="", action="audit.key_created", tenant="", key_id=key_id, outcome="ok", code=""),
    dict(seq=2, time="2026-04-01T10:00:01.5Z", caller="CN=admin,O=dcaas", role="admin", action="tenant.create", tenant="acme", key_id="", outcome="ok", code=""),
    dict(seq=3, time="2026-04-01T10:00:02.000123Z", caller="", role="", action="enrollment.enroll", tenant="", key_id="", outcome="denied", code="invalid_token"),
]
prev = bytes(32)
for r in records:
    buf = field(b"dcaas/v1 audit") + u64(r["seq"]) + u64(ns(r["time"]))
    for f in ("caller", "role", "action", "tenant", "key_id", "outcome", "code"):
        buf += field(r[f].encode())
    buf += field(prev)
    h = hashlib.sha256(buf).digest()
    sig_input = field(b"dcaas/v1 audit-record-sig") + u64(r["seq"]) + field(h)
    r.update(prev_hash=prev.hex(), hash=h.hex(), sig_input=sig_input.hex(), sig=key.sign(sig_input).hex())
    prev = h

cp_time = "2026-04-01T10:05:00.25Z"
cp_input = field(b"dcaas/v1 audit-checkpoint") + u64(3) + u64(ns(cp_time)) + field(prev)
checkpoint = dict(seq=3, time=cp_time, hash=prev.hex(), sig_input=cp_input.hex(), sig=key.sign(cp_input).hex())

print(json.dumps(dict(
    comment="Independent vectors (Python hashlib + pyca/cryptography Ed25519, signed_vectors.py) of the keyed audit log: record hashes, the bytes the audit key signs for each record and for a checkpoint, and the signatures (Ed25519 is deterministic).",
    seed=seed.hex(), public_key=pub.hex(), public_key_pem=pem, key_id=key_id,
    records=records, checkpoint=checkpoint), indent=1))
