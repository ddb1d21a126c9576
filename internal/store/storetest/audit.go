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
			if i > 0 { // the first is a record without a signature (written before the audit key)
				r.Sig = bytes.Repeat([]byte{byte(i)}, 64)
			}
			build := chain(r)
			got, err := s.AppendAudit(ctx, func(seq int64, prevHash []byte) (store.AuditRecord, error) {
				sawSeq = append(sawSeq, seq)
				sawPrev = append(sawPrev, prevHash)
				return build(seq, prevHash)
			}, nil)
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
		if !wantList(t, "AuditAfter(0, 10)", got, err, want, eqAudit) {
			t.FailNow()
		}
		checkChain(t, got, 1, nil)
		last, err := s.LastAudit(ctx)
		check(t, "LastAudit", err)
		if !eqAudit(last, want[len(want)-1]) {
			t.Errorf("LastAudit() = %s, want %s", show(last), show(want[len(want)-1]))
		}
	}},
	{"LastAudit/Empty", func(t *testing.T, s store.Store) {
		_, err := s.LastAudit(t.Context())
		wantErr(t, "LastAudit() on an empty log", err, store.ErrNotFound)
	}},
	{"AuditCheckpoint/FirstWins", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		_, err := s.LatestAuditCheckpoint(ctx)
		wantErr(t, "LatestAuditCheckpoint() with none", err, store.ErrNotFound)
		mk := func(seq int64, i int) store.AuditCheckpoint {
			return store.AuditCheckpoint{Seq: seq, Hash: bytes.Repeat([]byte{byte(seq)}, 32), Time: at(time.Duration(i) * time.Second), Sig: bytes.Repeat([]byte{byte(i)}, 64)}
		}
		for _, c := range []struct {
			put, want store.AuditCheckpoint
		}{
			{mk(0, 1), mk(0, 1)},
			{mk(5, 2), mk(5, 2)},
			{mk(5, 3), mk(5, 2)}, // a second checkpoint of seq 5 keeps the first
			{mk(3, 4), mk(3, 4)},
		} {
			got, err := s.PutAuditCheckpoint(ctx, c.put)
			check(t, fmt.Sprintf("PutAuditCheckpoint(%d)", c.put.Seq), err)
			if !eqCheckpoint(got, c.want) {
				t.Errorf("PutAuditCheckpoint(%s) = %s, want %s", show(c.put), show(got), show(c.want))
			}
		}
		latest, err := s.LatestAuditCheckpoint(ctx)
		check(t, "LatestAuditCheckpoint", err)
		if !eqCheckpoint(latest, mk(5, 2)) {
			t.Errorf("LatestAuditCheckpoint() = %s, want the one of seq 5", show(latest))
		}
		for _, bad := range []store.AuditCheckpoint{
			{Seq: 6, Time: at(0), Sig: []byte{1}},
			{Seq: 6, Time: at(0), Hash: []byte{1}},
			{Seq: -1, Time: at(0), Hash: []byte{1}, Sig: []byte{1}},
			{Seq: 6, Hash: []byte{1}, Sig: []byte{1}}, // zero time
		} {
			if _, err := s.PutAuditCheckpoint(ctx, bad); err == nil {
				t.Errorf("PutAuditCheckpoint(%s) = nil, want an error", show(bad))
			}
		}
	}},
	{"DeleteAuditThrough", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		var recs []store.AuditRecord
		for i := range 10 {
			r, err := s.AppendAudit(ctx, chain(newAudit(i)), nil)
			check(t, fmt.Sprintf("AppendAudit(#%d)", i), err)
			recs = append(recs, r)
		}
		cp := func(seq int64, i int) store.AuditCheckpoint {
			return store.AuditCheckpoint{Seq: seq, Hash: recs[seq-1].Hash, Time: at(time.Duration(i) * time.Second), Sig: bytes.Repeat([]byte{byte(i)}, 64)}
		}
		for i, seq := range []int64{3, 5, 8} {
			_, err := s.PutAuditCheckpoint(ctx, cp(seq, i+1))
			check(t, "PutAuditCheckpoint", err)
		}
		n, err := s.DeleteAuditThrough(ctx, 5, 0)
		if err != nil || n != 0 {
			t.Fatalf("DeleteAuditThrough(5, 0) = %d, %v; want 0, nil", n, err)
		}
		// Lowest first, up to the limit.
		n, err = s.DeleteAuditThrough(ctx, 5, 2)
		if err != nil || n != 2 {
			t.Fatalf("DeleteAuditThrough(5, 2) = %d, %v; want 2, nil", n, err)
		}
		got, err := s.AuditAfter(ctx, 0, 100)
		if !wantList(t, "AuditAfter(0) after deleting 2", got, err, recs[2:], eqAudit) {
			t.FailNow()
		}
		// Then the rest up to seq, never above it.
		for _, want := range []int64{3, 0} {
			n, err = s.DeleteAuditThrough(ctx, 5, 100)
			if err != nil || n != want {
				t.Fatalf("DeleteAuditThrough(5, 100) = %d, %v; want %d", n, err, want)
			}
		}
		got, err = s.AuditAfter(ctx, 0, 100)
		if !wantList(t, "AuditAfter(0) after deleting through 5", got, err, recs[5:], eqAudit) {
			t.FailNow()
		}
		// Checkpoints below seq are gone (a new one of record 3 is stored
		// as given), those of seq and above stay (the first still wins).
		for _, c := range []struct {
			put, want store.AuditCheckpoint
		}{
			{cp(3, 9), cp(3, 9)},
			{cp(5, 9), cp(5, 2)},
			{cp(8, 9), cp(8, 3)},
		} {
			got, err := s.PutAuditCheckpoint(ctx, c.put)
			check(t, fmt.Sprintf("PutAuditCheckpoint(%d)", c.put.Seq), err)
			if !eqCheckpoint(got, c.want) {
				t.Errorf("PutAuditCheckpoint(%s) after the prune = %s, want %s", show(c.put), show(got), show(c.want))
			}
		}
		// The log goes on from its end.
		r, err := s.AppendAudit(ctx, chain(newAudit(10)), nil)
		check(t, "AppendAudit after the prune", err)
		if r.Seq != 11 || !bytes.Equal(r.PrevHash, recs[9].Hash) {
			t.Errorf("AppendAudit after the prune = record %d after %x, want 11 after %x", r.Seq, r.PrevHash, recs[9].Hash)
		}
	}},
	{"AppendAudit/SignedAtCommit", func(t *testing.T, s store.Store) {
		// A signer is called once per transaction, for its last record as
		// committed; outside InTx for the record as it is stored.
		ctx := t.Context()
		var signed []int64
		sign := func(seq int64, hash []byte) []byte {
			signed = append(signed, seq)
			return append([]byte("sig:"), hash...)
		}
		wantSigned := func(step string, want ...int64) {
			t.Helper()
			if fmt.Sprint(signed) != fmt.Sprint(want) {
				t.Errorf("%s: signer called for records %v, want %v", step, signed, want)
			}
			signed = nil
		}
		err := s.InTx(ctx, func(tx store.Tx) error {
			for i := range 3 {
				if _, err := tx.AppendAudit(ctx, chain(newAudit(i)), sign); err != nil {
					return err
				}
			}
			wantSigned("inside the transaction, before its commit")
			return nil
		})
		check(t, "InTx(three appends)", err)
		wantSigned("three appends in one transaction", 3)
		_, err = s.AppendAudit(ctx, chain(newAudit(3)), sign)
		check(t, "AppendAudit(outside InTx)", err)
		wantSigned("an append outside InTx", 4)
		errRefused := errors.New("refused")
		err = s.InTx(ctx, func(tx store.Tx) error {
			if _, err := tx.AppendAudit(ctx, chain(newAudit(4)), sign); err != nil {
				return err
			}
			return errRefused
		})
		wantErr(t, "InTx(append, then fail)", err, errRefused)
		wantSigned("a transaction rolled back")
		// A record built already signed (sign nil) ends the transaction:
		// the signer's record before it stays unsigned, and a row the
		// signer did not build is never signed.
		err = s.InTx(ctx, func(tx store.Tx) error {
			if _, err := tx.AppendAudit(ctx, chain(newAudit(5)), sign); err != nil {
				return err
			}
			_, err := tx.AppendAudit(ctx, chain(newAudit(6)), nil)
			return err
		})
		check(t, "InTx(signer, then no signer)", err)
		wantSigned("a transaction ending with a record appended without a signer")
		// A record built signed and a signer: refused.
		_, err = s.AppendAudit(ctx, func(seq int64, prev []byte) (store.AuditRecord, error) {
			r, err := chain(newAudit(7))(seq, prev)
			r.Sig = []byte("presigned")
			return r, err
		}, sign)
		if err == nil {
			t.Error("AppendAudit(a signed record and a signer) = nil, want an error")
		}
		recs, err := s.AuditAfter(ctx, 0, 10)
		check(t, "AuditAfter(0, 10)", err)
		checkChain(t, recs, 1, nil)
		var sigs []string
		for _, r := range recs {
			switch {
			case r.Sig == nil:
				sigs = append(sigs, "-")
			case bytes.Equal(r.Sig, append([]byte("sig:"), r.Hash...)):
				sigs = append(sigs, "signed")
			default:
				sigs = append(sigs, fmt.Sprintf("%q", r.Sig))
			}
		}
		if got, want := fmt.Sprint(sigs), "[- - signed signed - -]"; got != want {
			t.Errorf("signatures stored = %s, want %s", got, want)
		}
	}},
	{"AppendAudit/BuildError", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		_, err := s.AppendAudit(ctx, chain(newAudit(0)), nil)
		check(t, "AppendAudit(#0)", err)
		errBuild := errors.New("build failed")
		_, err = s.AppendAudit(ctx, func(int64, []byte) (store.AuditRecord, error) {
			return store.AuditRecord{}, errBuild
		}, nil)
		wantErr(t, "AppendAudit(failing build)", err, errBuild)
		// Nothing was stored: the next record is seq 2.
		got, err := s.AppendAudit(ctx, chain(newAudit(1)), nil)
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
		}, nil)
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
			_, err := s.AppendAudit(ctx, chain(newAudit(i)), nil)
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
			_, err := s.AppendAudit(ctx, chain(newAudit(i)), nil)
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
