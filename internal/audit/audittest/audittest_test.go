package audittest

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// TestHashVectors: the attacker's own hash is the published one (the
// independent vectors of internal/audit), so a recomputed chain is what a
// real attacker would write.
func TestHashVectors(t *testing.T) {
	data, err := os.ReadFile("../testdata/signed_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Records []struct {
			Seq                                         int64
			Time                                        string
			Caller, Role, Action, Tenant, Outcome, Code string
			KeyID                                       string `json:"key_id"`
			PrevHash                                    string `json:"prev_hash"`
			Hash                                        string
		}
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for _, v := range file.Records {
		at, err := time.Parse(time.RFC3339Nano, v.Time)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, Record{Seq: v.Seq, LoggedAt: at.UnixNano(), Caller: v.Caller, Role: v.Role, Action: v.Action,
			Tenant: v.Tenant, KeyID: v.KeyID, Outcome: v.Outcome, Code: v.Code})
	}
	Rechain(recs, 0)
	for i, v := range file.Records {
		if got := hex.EncodeToString(recs[i].Hash); got != v.Hash {
			t.Errorf("record %d: Hash = %s, want %s", v.Seq, got, v.Hash)
		}
		if got := hex.EncodeToString(recs[i].PrevHash); got != v.PrevHash {
			t.Errorf("record %d: PrevHash = %s, want %s", v.Seq, got, v.PrevHash)
		}
	}
}
