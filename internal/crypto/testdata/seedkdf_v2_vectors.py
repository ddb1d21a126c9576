# SeedKDF v2 test vectors (docs/formats.md section 7), computed independently of
# the Go code: HKDF-SHA-256 written out from RFC 5869 over Python's hmac, and the
# canonical policy bytes built from their definition.
#   python3 seedkdf_v2_vectors.py > seedkdf_v2_vectors.json
import hmac, hashlib, base64, struct
def hkdf(salt, ikm, info, n):
    prk = hmac.new(salt, ikm, "sha256").digest()
    out=b""; t=b""; i=1
    while len(out)<n:
        t=hmac.new(prk, t+info+bytes([i]), "sha256").digest(); out+=t; i+=1
    return out[:n]
u32=lambda n: struct.pack(">I", n)
u64=lambda n: struct.pack(">Q", n)
s=lambda x: u32(len(x))+x
def info(label, t, pol): return label+b"\x00"+s(t)+s(pol)
def pol(rules, limits=(0,0,0)):
    rs=sorted(set(u32(len(p))+b"".join(s(x) for x in sorted(p))+u32(len(a))+b"".join(s(x) for x in sorted(a)) for p,a in rules))
    return u32(len(rs))+b"".join(rs)+b"".join(u64(x) for x in limits)
seed=bytes(range(0x40,0x60))
cases=[("A", bytes(range(32)), b"aes-256-gcm", b""),
       ("B", bytes(range(32)), b"hmac-sha256", b""),
       ("C", bytes(range(32)), b"aes-256-gcm", pol([([b"CN=payments-api,O=acme"],[b"encrypt",b"decrypt"])],(0,1000,0))),
       ("D", bytes(range(0x20,0x40)), b"aes-256-gcm", b"")]
import json
pols={"C":{"rules":[{"principals":["CN=payments-api,O=acme"],"actions":["encrypt","decrypt"]}],"limits":{"max_operations":1000}}}
out={"comment":"SeedKDF v2 (docs/formats.md section 7), computed with Python's hmac/hashlib (HKDF written out from RFC 5869); never change these values","vectors":[]}
for n,csk,t,p in cases:
    ik=info(b"dcaas/seedkdf/v2 key",t,p); ii=info(b"dcaas/seedkdf/v2 key id",t,p)
    v={"name":n,"custodian_seed_key":csk.hex(),"seed":seed.hex(),"type":t.decode()}
    if n in pols: v["policy"]=pols[n]
    v.update({"canonical_policy":p.hex(),"info_key":ik.hex(),"info_id":ii.hex(),"key":hkdf(csk,seed,ik,32).hex(),"key_id":"drv_"+base64.b32encode(hkdf(csk,seed,ii,16)).decode().rstrip("=").lower()})
    out["vectors"].append(v)
print(json.dumps(out,indent=2))
