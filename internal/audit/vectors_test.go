package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/testvectors"
)

type vector struct {
	Seq      int64  `json:"seq"`
	Time     string `json:"time"`
	Caller   string `json:"caller"`
	Role     string `json:"role"`
	Action   string `json:"action"`
	Tenant   string `json:"tenant"`
	KeyID    string `json:"key_id"`
	Outcome  string `json:"outcome"`
	Code     string `json:"code"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
	SigInput string `json:"sig_input"` // signed vectors only
	Sig      string `json:"sig"`
}

func (v vector) event() Event {
	return Event{Caller: v.Caller, Role: v.Role, Action: v.Action, Tenant: v.Tenant, KeyID: v.KeyID, Outcome: v.Outcome, Code: v.Code}
}

func (v vector) record(t *testing.T) store.AuditRecord {
	t.Helper()
	return store.AuditRecord{Seq: v.Seq, Time: parseTime(t, v.Time), Caller: v.Caller, Role: v.Role, Action: v.Action, Tenant: v.Tenant,
		KeyID: v.KeyID, Outcome: v.Outcome, Code: v.Code, PrevHash: testvectors.Hex(t, v.PrevHash)}
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

// TestVectors pins the hash encoding with unkeyed (legacy) records hashed
// by an independent implementation (testdata/vectors.json, Python
// hashlib). As a log they are a legacy prefix without its first signed
// record, so they do not verify on their own.
func TestVectors(t *testing.T) {
	var file struct{ Records []vector }
	readJSON(t, "vectors.json", &file)
	for _, v := range file.Records {
		r := v.record(t)
		if got := hex.EncodeToString(recordHash(r)); got != v.Hash {
			t.Errorf("record %d: hash %s, want %s", v.Seq, got, v.Hash)
		}
	}
}

// TestSignedVectors pins the keyed log with vectors made by an independent
// implementation (testdata/signed_vectors.py: Python hashlib and
// pyca/cryptography's Ed25519): the key from its seed, each record's hash,
// the exact bytes signed for a record and for a checkpoint, and the
// signatures (Ed25519 is deterministic). Append, given the same clock,
// key and events, writes the same records; Verify accepts them.
func TestSignedVectors(t *testing.T) {
	var file struct {
		Seed         string `json:"seed"`
		PublicKey    string `json:"public_key"`
		PublicKeyPEM string `json:"public_key_pem"`
		KeyID        string `json:"key_id"`
		Records      []vector
		Checkpoint   struct {
			Seq      int64  `json:"seq"`
			Time     string `json:"time"`
			Hash     string `json:"hash"`
			SigInput string `json:"sig_input"`
			Sig      string `json:"sig"`
		}
	}
	readJSON(t, "signed_vectors.json", &file)
	key, err := kcrypto.NewLogKey(secretOf(testvectors.Hex(t, file.Seed)))
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public()
	fromPEM, err := kcrypto.ParseLogVerifyKeyPEM([]byte(file.PublicKeyPEM))
	if err != nil || !fromPEM.Equal(pub) || hex.EncodeToString(pub.Bytes()) != file.PublicKey || pub.ID() != file.KeyID {
		t.Fatalf("key = %x (%s), PEM %v; want %s (%s)", pub.Bytes(), pub.ID(), err, file.PublicKey, file.KeyID)
	}
	if !bytes.Equal(pub.PEM(), []byte(file.PublicKeyPEM)) {
		t.Errorf("PEM() = %q, want %q", pub.PEM(), file.PublicKeyPEM)
	}

	m := &memAudit{}
	for _, v := range file.Records {
		r := v.record(t)
		if got := hex.EncodeToString(recordHash(r)); got != v.Hash {
			t.Errorf("record %d: hash %s, want %s", v.Seq, got, v.Hash)
		}
		r.Hash = testvectors.Hex(t, v.Hash)
		if got := hex.EncodeToString(recordSigInput(r.Seq, r.Hash)); got != v.SigInput {
			t.Errorf("record %d: signature input %s, want %s", v.Seq, got, v.SigInput)
		}
		if got := hex.EncodeToString(key.Sign(recordSigInput(r.Seq, r.Hash))); got != v.Sig {
			t.Errorf("record %d: signature %s, want %s", v.Seq, got, v.Sig)
		}
		r.Sig = testvectors.Hex(t, v.Sig)
		m.records = append(m.records, r)
	}
	res, err := Verify(t.Context(), m, pub)
	if err != nil || res.Records != int64(len(file.Records)) || res.Legacy != 0 {
		t.Errorf("Verify(vectors) = %+v, %v", res, err)
	}

	// Append writes the same records.
	replay := &memAudit{}
	i := 0
	l := New(key, func() time.Time { at := parseTime(t, file.Records[i].Time); i++; return at.In(time.Local) })
	for _, v := range file.Records {
		got, err := l.Append(t.Context(), replay, v.event())
		if err != nil || hex.EncodeToString(got.Hash) != v.Hash || hex.EncodeToString(got.Sig) != v.Sig {
			t.Errorf("Append(vector %d) = hash %x sig %x, %v; want %s, %s", v.Seq, got.Hash, got.Sig, err, v.Hash, v.Sig)
		}
	}

	c := file.Checkpoint
	cp := store.AuditCheckpoint{Seq: c.Seq, Hash: testvectors.Hex(t, c.Hash), Time: parseTime(t, c.Time), Sig: testvectors.Hex(t, c.Sig)}
	if got := hex.EncodeToString(checkpointSigInput(cp)); got != c.SigInput {
		t.Errorf("checkpoint signature input %s, want %s", got, c.SigInput)
	}
	if got := hex.EncodeToString(key.Sign(checkpointSigInput(cp))); got != c.Sig {
		t.Errorf("checkpoint signature %s, want %s", got, c.Sig)
	}
	if res, err := Verify(t.Context(), m, pub, cp); err != nil || res.Checkpoints != 1 {
		t.Errorf("Verify(vectors, checkpoint) = %+v, %v", res, err)
	}
	made, err := New(key, func() time.Time { return cp.Time }).Checkpoint(t.Context(), m)
	if err != nil || !bytes.Equal(made.Sig, cp.Sig) {
		t.Errorf("Checkpoint() = %x, %v; want the vector's signature %s", made.Sig, err, c.Sig)
	}
}
