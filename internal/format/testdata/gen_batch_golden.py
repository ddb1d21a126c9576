#!/usr/bin/env python3
"""Independent encoder of the version-2 wrapped-key batch layout
(docs/formats.md section 2), written from the document, not from the Go
code. It prints golden.json entries of kind "batch"; the Go tests check
that ParseWrappedBatch reads them and Marshal writes them back exactly."""
import json, struct

def batch(kem_id, enc, recipient, issued_at, not_after, entries):
    r = recipient.encode()
    out = b"DWRP" + bytes([2]) + struct.pack(">HH", kem_id, len(enc)) + enc
    out += bytes([len(r)]) + r + struct.pack(">QQI", issued_at, not_after, len(entries))
    header_len = len(out)
    for md, encryptions, sealed in entries:
        out += struct.pack(">I", len(md)) + md + struct.pack(">QH", encryptions, len(sealed)) + sealed
    return out, header_len

def entry(name, kem_id, enc, recipient, issued_at, not_after, entries):
    raw, hl = batch(kem_id, enc, recipient, issued_at, not_after, entries)
    return {"name": name, "kind": "batch", "hex": raw.hex(), "header_len": hl, "fields": {
        "kem_id": kem_id, "enc": enc.hex(), "recipient": recipient,
        "issued_at": issued_at, "not_after": not_after,
        "keys": [{"metadata": md.hex(), "encryptions": n, "sealed": s.hex()} for md, n, s in entries]}}

print(json.dumps([
    entry("batch-one-key", 0x0020, b"\x11" * 32, "ins_abcdefghijklmnopqrstuvwxyz", 1764547200000, 1764547800000,
          [(b'{"key_id":"key_a","version":1}', 0, b"\x22" * 61)]),
    entry("batch-two-keys", 0x0010, b"\x33" * 65, "ins_x", 1, 2,
          [(b'{"key_id":"key_b","version":7}', 4294967296, b"\x44" * 29),
           (b'{}', 9223372036854775807, b"\x55" * 16384)]),
], indent=1))
