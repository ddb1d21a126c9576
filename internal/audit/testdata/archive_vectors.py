#!/usr/bin/env python3
"""Independent generator of two chained audit archives (archive-1.jsonl,
archive-2.jsonl): the records of a keyed audit log, their hashes and
signatures computed with Python's hashlib and the pyca/cryptography
Ed25519 (not dcaas code), written in the archive format of
docs/formats.md section 4.1. Record 4 is unsigned (it closes no
transaction: record 5's signature covers it through the chain); the second
archive starts after record 5, a signed record.
Run: python3 archive_vectors.py   (writes both files here)"""
import base64, hashlib, json, struct
from datetime import datetime, timezone
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

def field(b): return struct.pack(">I", len(b)) + b
def u64(n): return struct.pack(">Q", n & 0xFFFFFFFFFFFFFFFF)
def b64(b): return base64.b64encode(b).decode()

def ns(ts):
    d = datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    frac = ts[19:-1]
    n = int(d.timestamp()) * 10**9
    if frac:
        n += int((frac[1:] + "000000000")[:9])
    return n

seed = bytes(range(32))  # the key of signed_vectors.json
key = Ed25519PrivateKey.from_private_bytes(seed)
pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
key_id = "ed25519:" + hashlib.sha256(pub).digest()[:8].hex()

records = [
    dict(seq=1, time="2026-04-01T10:00:00Z", caller="kms", action="audit.key_created", key_id=key_id, outcome="ok"),
    dict(seq=2, time="2026-04-01T10:00:01.5Z", caller="CN=admin,O=dcaas", role="admin", action="tenant.create", tenant="acme", outcome="ok"),
    dict(seq=3, time="2026-04-01T10:00:02.000123Z", action="enrollment.enroll", outcome="denied", code="invalid_token"),
    dict(seq=4, time="2026-04-01T10:00:03Z", caller="CN=payments,O=acme", role="custodian", action="crypto.encrypt", tenant="acme", key_id="key_0001", outcome="ok", signed=False),
    dict(seq=5, time="2026-04-01T10:00:03.000001Z", caller="CN=payments,O=acme", role="custodian", action="crypto.encrypt", tenant="acme", key_id="key_0002", outcome="ok"),
    dict(seq=6, time="2026-04-02T00:00:00Z", caller="kms", action="instances.polled", outcome="ok"),
    dict(seq=7, time="2026-04-02T00:00:10Z", caller="CN=admin,O=dcaas", role="admin", action="audit.read", outcome="ok"),
]
prev = bytes(32)
lines = []
for r in records:
    buf = field(b"dcaas/v1 audit") + u64(r["seq"]) + u64(ns(r["time"]))
    for f in ("caller", "role", "action", "tenant", "key_id", "outcome", "code"):
        buf += field(r.get(f, "").encode())
    buf += field(prev)
    h = hashlib.sha256(buf).digest()
    out = dict(seq=r["seq"], time=r["time"], caller=r.get("caller", ""))
    for f in ("role",):
        if r.get(f): out[f] = r[f]
    out["action"] = r["action"]
    for f in ("tenant", "key_id"):
        if r.get(f): out[f] = r[f]
    out["outcome"] = r["outcome"]
    if r.get("code"): out["code"] = r["code"]
    out["prev_hash"], out["hash"] = b64(prev), b64(h)
    if r.get("signed", True):
        out["signature"] = b64(key.sign(field(b"dcaas/v1 audit-record-sig") + u64(r["seq"]) + field(h)))
    lines.append(out)
    prev = h

def write(name, start, recs):
    with open(name, "w") as f:
        f.write(json.dumps(dict(format="dcaas-audit-archive/v1", key_id=key_id, start=start)) + "\n")
        for r in recs:
            f.write(json.dumps(r) + "\n")

write("archive-1.jsonl", dict(seq=0), lines[:5])
five = lines[4]
write("archive-2.jsonl", dict(seq=5, hash=five["hash"], signature=five["signature"]), lines[5:])
