package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// chainHash is the suite's stand-in for internal/audit's record hash:
// SHA-256(prevHash || seq as 8 big-endian bytes).
func chainHash(prevHash []byte, seq int64) []byte {
	h := sha256.New()
	h.Write(prevHash)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(seq)))
	return h.Sum(nil)
}

// chain returns a build function that completes r with the seq and
// previous hash it is given and a chainHash.
func chain(r store.AuditRecord) func(int64, []byte) (store.AuditRecord, error) {
	return func(seq int64, prevHash []byte) (store.AuditRecord, error) {
		r.Seq = seq
		r.PrevHash = prevHash
		r.Hash = chainHash(prevHash, seq)
		return r, nil
	}
}

func newAudit(i int) store.AuditRecord {
	return store.AuditRecord{
		Time:    at(time.Duration(i) * time.Millisecond),
		Caller:  "CN=payments,OU=acme,O=dcaas",
		Role:    "custodian",
		Action:  fmt.Sprintf("action-%d", i),
		Tenant:  "acme",
		KeyID:   "k1",
		Outcome: "ok",
		Code:    "",
	}
}

// checkChain fails t unless recs are seq first, first+1, ... and each
// record's PrevHash is the Hash of the one before.
func checkChain(t *testing.T, recs []store.AuditRecord, first int64, prevHash []byte) {
	t.Helper()
	for i, r := range recs {
		if want := first + int64(i); r.Seq != want {
			t.Fatalf("record %d has Seq %d, want %d", i, r.Seq, want)
		}
		if !bytes.Equal(r.PrevHash, prevHash) {
			t.Errorf("record %d: PrevHash = %x, want the previous Hash %x", r.Seq, r.PrevHash, prevHash)
		}
		if want := chainHash(r.PrevHash, r.Seq); !bytes.Equal(r.Hash, want) {
			t.Errorf("record %d: Hash = %x, want %x", r.Seq, r.Hash, want)
		}
		prevHash = r.Hash
	}
}

var auditTests = []test{
	{"AuditAfter/Empty", func(t *testing.T, s store.Store) {
		recs, err := s.AuditAfter(t.Context(), 0, 10)
		check(t, "AuditAfter(0, 10)", err)
		if len(recs) != 0 {
			t.Errorf("AuditAfter(0, 10) = %d records, want 0", len(recs))
		}
	}},
	{"AppendAudit/RoundTrip", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		var sawSeq []int64
		var sawPrev [][]byte
		var want []store.AuditRecord
		for i := range 3 {
			r := newAudit(i)
			if i == 1 {
				r.Outcome, r.Code, r.KeyID, r.Tenant = "denied", "policy_denied", "", ""
			}
			build := chain(r)
			got, err := s.AppendAudit(ctx, func(seq int64, prevHash []byte) (store.AuditRecord, error) {
				sawSeq = append(sawSeq, seq)
				sawPrev = append(sawPrev, prevHash)
				return build(seq, prevHash)
			})
			check(t, fmt.Sprintf("AppendAudit(#%d)", i), err)
			stored, _ := build(int64(i+1), got.PrevHash)
			if !eqAudit(got, stored) {
				t.Errorf("AppendAudit(#%d) = %s, want %s", i, show(got), show(stored))
			}
			want = append(want, stored)
		}
		if sawSeq[0] != 1 || len(sawPrev[0]) != 0 {
			t.Errorf("first build got (%d, %x), want (1, nil)", sawSeq[0], sawPrev[0])
		}
		for i := 1; i < len(sawSeq); i++ {
			if sawSeq[i] != int64(i+1) || !bytes.Equal(sawPrev[i], want[i-1].Hash) {
				t.Errorf("build #%d got (%d, %x), want (%d, %x)", i, sawSeq[i], sawPrev[i], i+1, want[i-1].Hash)
			}
		}
		got, err := s.AuditAfter(ctx, 0, 10)
		check(t, "AuditAfter(0, 10)", err)
		if len(got) != len(want) {
			t.Fatalf("AuditAfter(0, 10) = %d records, want %d", len(got), len(want))
		}
		for i := range got {
			if !eqAudit(got[i], want[i]) {
				t.Errorf("AuditAfter(0, 10)[%d] = %s, want %s", i, show(got[i]), show(want[i]))
			}
		}
		checkChain(t, got, 1, nil)
	}},
	{"AppendAudit/BuildError", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		_, err := s.AppendAudit(ctx, chain(newAudit(0)))
		check(t, "AppendAudit(#0)", err)
		errBuild := errors.New("build failed")
		_, err = s.AppendAudit(ctx, func(int64, []byte) (store.AuditRecord, error) {
			return store.AuditRecord{}, errBuild
		})
		wantErr(t, "AppendAudit(failing build)", err, errBuild)
		// Nothing was stored: the next record is seq 2.
		got, err := s.AppendAudit(ctx, chain(newAudit(1)))
		check(t, "AppendAudit(#1)", err)
		if got.Seq != 2 {
			t.Errorf("AppendAudit(#1).Seq = %d, want 2", got.Seq)
		}
		recs, err := s.AuditAfter(ctx, 0, 10)
		check(t, "AuditAfter(0, 10)", err)
		if len(recs) != 2 {
			t.Fatalf("AuditAfter(0, 10) = %d records, want 2", len(recs))
		}
		checkChain(t, recs, 1, nil)
	}},
	{"AppendAudit/WrongSeq", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		_, err := s.AppendAudit(ctx, func(seq int64, prevHash []byte) (store.AuditRecord, error) {
			r, err := chain(newAudit(0))(seq, prevHash)
			r.Seq = seq + 1
			return r, err
		})
		if err == nil {
			t.Errorf("AppendAudit(build returning seq+1) = nil, want an error")
		}
		recs, err := s.AuditAfter(ctx, 0, 10)
		check(t, "AuditAfter(0, 10)", err)
		if len(recs) != 0 {
			t.Errorf("AuditAfter(0, 10) = %d records, want 0", len(recs))
		}
	}},
	{"AuditAfter/Paging", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		for i := range 5 {
			_, err := s.AppendAudit(ctx, chain(newAudit(i)))
			check(t, fmt.Sprintf("AppendAudit(#%d)", i), err)
		}
		for _, c := range []struct {
			after int64
			limit int
			want  []int64
		}{
			{0, 2, []int64{1, 2}},
			{2, 2, []int64{3, 4}},
			{4, 2, []int64{5}},
			{5, 2, nil},
			{0, 100, []int64{1, 2, 3, 4, 5}},
			{3, 1, []int64{4}},
			{-1, 1, []int64{1}},
			{99, 10, nil},
			{0, 0, nil},
			{0, -1, nil},
		} {
			call := fmt.Sprintf("AuditAfter(%d, %d)", c.after, c.limit)
			recs, err := s.AuditAfter(ctx, c.after, c.limit)
			check(t, call, err)
			var seqs []int64
			for _, r := range recs {
				seqs = append(seqs, r.Seq)
			}
			if fmt.Sprint(seqs) != fmt.Sprint(c.want) {
				t.Errorf("%s = seqs %v, want %v", call, seqs, c.want)
			}
		}
	}},
	{"AppendAudit/Concurrent", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		const n = 50
		errs := together(n, func(i int) error {
			_, err := s.AppendAudit(ctx, chain(newAudit(i)))
			return err
		})
		for i, err := range errs {
			check(t, fmt.Sprintf("AppendAudit(#%d)", i), err)
		}
		recs, err := s.AuditAfter(ctx, 0, 2*n)
		check(t, fmt.Sprintf("AuditAfter(0, %d)", 2*n), err)
		if len(recs) != n {
			t.Fatalf("AuditAfter(0, %d) = %d records, want %d", 2*n, len(recs), n)
		}
		checkChain(t, recs, 1, nil)
	}},
}
