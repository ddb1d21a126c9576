package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// txTests: Store.InTx stores everything done through its tx together, or
// nothing; a method that fails inside keeps its own promises and leaves
// the transaction usable.
var txTests = []test{
	{"InTx/Commit", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		tn, mk := newTenant("acme")
		k, v := newKey("k1", true)
		var rec store.AuditRecord
		err := s.InTx(ctx, func(tx store.Tx) error {
			check(t, "tx.CreateTenant", tx.CreateTenant(ctx, tn, mk))
			check(t, "tx.CreateKey", tx.CreateKey(ctx, k, v))
			// The transaction reads what it wrote.
			got, err := tx.GetKey(ctx, "k1")
			if err != nil || !eqKey(got, k) {
				t.Errorf("tx.GetKey(k1) = %s, %v; want %s", show(got), err, show(k))
			}
			check(t, "tx.DisableKey", tx.DisableKey(ctx, "k1", at(time.Second)))
			rec, err = tx.AppendAudit(ctx, chain(newAudit(0)), nil)
			return err
		})
		check(t, "InTx", err)
		if rec.Seq != 1 {
			t.Errorf("tx.AppendAudit().Seq = %d, want 1", rec.Seq)
		}
		got, err := s.GetTenant(ctx, "acme")
		if err != nil || !eqTenant(got, tn) {
			t.Errorf("GetTenant(acme) = %s, %v; want %s", show(got), err, show(tn))
		}
		key, err := s.GetKey(ctx, "k1")
		if err != nil || !timePtrEqual(key.DisabledAt, ptr(at(time.Second))) {
			t.Errorf("GetKey(k1) = %s, %v; want it disabled at %v", show(key), err, at(time.Second))
		}
		wantFeed(t, s, "acme", []store.Revocation{keyEvent(1, "acme", "k1", at(time.Second))})
		recs, err := s.AuditAfter(ctx, 0, 10)
		check(t, "AuditAfter(0, 10)", err)
		if len(recs) != 1 || !eqAudit(recs[0], rec) {
			t.Errorf("AuditAfter(0, 10) = %s, want [%s]", show(recs), show(rec))
		}
	}},
	{"InTx/ErrorStoresNothing", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		createKeyOf(t, s, "acme", "old")
		tok := newOneTime(store.OneTimeEnrollToken, "tok")
		check(t, "PutOneTime", s.PutOneTime(ctx, tok))
		errFn := errors.New("fn failed")
		err := s.InTx(ctx, func(tx store.Tx) error {
			tn, mk := newTenant("acme")
			check(t, "tx.CreateTenant", tx.CreateTenant(ctx, tn, mk))
			k, v := newKey("k1", true)
			check(t, "tx.CreateKey", tx.CreateKey(ctx, k, v))
			check(t, "tx.DisableKey(old)", tx.DisableKey(ctx, "old", at(time.Second)))
			_, err := tx.ConsumeOneTime(ctx, tok.Kind, tok.Hash, at(time.Minute))
			check(t, "tx.ConsumeOneTime", err)
			_, err = tx.PutSettingIfAbsent(ctx, "ca", []byte("ca"))
			check(t, "tx.PutSettingIfAbsent", err)
			_, err = tx.AppendAudit(ctx, chain(newAudit(0)), nil)
			check(t, "tx.AppendAudit", err)
			return errFn
		})
		wantErr(t, "InTx(failing fn)", err, errFn)
		_, err = s.GetTenant(ctx, "acme")
		wantErr(t, "GetTenant(acme)", err, store.ErrNotFound)
		_, err = s.GetKey(ctx, "k1")
		wantErr(t, "GetKey(k1)", err, store.ErrNotFound)
		if k, err := s.GetKey(ctx, "old"); err != nil || k.DisabledAt != nil {
			t.Errorf("GetKey(old) = %s, %v; want it not disabled", show(k), err)
		}
		_, err = s.GetSetting(ctx, "ca")
		wantErr(t, "GetSetting(ca)", err, store.ErrNotFound)
		_, err = s.ConsumeOneTime(ctx, tok.Kind, tok.Hash, at(time.Minute))
		check(t, "ConsumeOneTime after the rolled back transaction", err)
		wantLast(t, s, 0)
		// No gap in the audit log either: the next record is seq 1.
		rec, err := s.AppendAudit(ctx, chain(newAudit(1)), nil)
		check(t, "AppendAudit", err)
		if rec.Seq != 1 {
			t.Errorf("AppendAudit().Seq = %d, want 1", rec.Seq)
		}
	}},
	{"InTx/AuditAndKey", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		// A key creation and its audit record commit together ...
		k, v := newKey("k1", true)
		check(t, "InTx", s.InTx(ctx, func(tx store.Tx) error {
			if err := tx.CreateKey(ctx, k, v); err != nil {
				return err
			}
			_, err := tx.AppendAudit(ctx, chain(newAudit(0)), nil)
			return err
		}))
		// ... and a creation that fails takes its record with it.
		err := s.InTx(ctx, func(tx store.Tx) error {
			if _, err := tx.AppendAudit(ctx, chain(newAudit(1)), nil); err != nil {
				return err
			}
			return tx.CreateKey(ctx, k, v)
		})
		wantErr(t, "InTx(duplicate key)", err, store.ErrExists)
		got, err := s.GetKey(ctx, "k1")
		if err != nil || !eqKey(got, k) {
			t.Errorf("GetKey(k1) = %s, %v; want %s", show(got), err, show(k))
		}
		recs, err := s.AuditAfter(ctx, 0, 10)
		check(t, "AuditAfter(0, 10)", err)
		if len(recs) != 1 || recs[0].Action != newAudit(0).Action {
			t.Errorf("AuditAfter(0, 10) = %s, want only the first transaction's record", show(recs))
		}
		checkChain(t, recs, 1, nil)
	}},
	{"InTx/FailedMethodKeepsTx", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateApp", s.CreateApp(ctx, newApp("acme", "payments")))
		check(t, "PutCert(dup)", s.PutCert(ctx, newCert("dup", store.CertApp, "x")))
		tok := newOneTime(store.OneTimeEnrollToken, "tok")
		check(t, "PutOneTime", s.PutOneTime(ctx, tok))
		in := newInstance("i-1", "acme", "CN=a", at(time.Minute))
		k, v := newKey("k1", false)
		check(t, "InTx", s.InTx(ctx, func(tx store.Tx) error {
			wantErr(t, "tx.CreateApp(duplicate)", tx.CreateApp(ctx, newApp("acme", "payments")), store.ErrExists)
			// Enrollment fails on its second certificate, after consuming
			// the token: the token stays unused.
			err := tx.EnrollInstance(ctx, tok.Kind, tok.Hash, in,
				[]store.Cert{newCert("c-i-1", store.CertInstance, "i-1"), newCert("dup", store.CertWrapping, "i-1")})
			wantErr(t, "tx.EnrollInstance(duplicate serial)", err, store.ErrExists)
			_, err = tx.GetCert(ctx, "c-i-1")
			wantErr(t, "tx.GetCert(c-i-1)", err, store.ErrNotFound)
			if err := tx.EnrollInstance(ctx, tok.Kind, tok.Hash, in,
				[]store.Cert{newCert("c-i-1", store.CertInstance, "i-1")}); err != nil {
				return fmt.Errorf("tx.EnrollInstance: %w", err)
			}
			if err := tx.CreateKey(ctx, k, v); err != nil {
				return fmt.Errorf("tx.CreateKey: %w", err)
			}
			_, err = tx.AppendAudit(ctx, chain(newAudit(0)), nil)
			return err
		}))
		if _, err := s.GetInstance(ctx, "i-1"); err != nil {
			t.Errorf("GetInstance(i-1) = %v, want nil", err)
		}
		if _, err := s.GetKey(ctx, "k1"); err != nil {
			t.Errorf("GetKey(k1) = %v, want nil", err)
		}
		_, err := s.ConsumeOneTime(ctx, tok.Kind, tok.Hash, at(2*time.Minute))
		wantErr(t, "ConsumeOneTime after the enrollment", err, store.ErrUsed)
		recs, err := s.AuditAfter(ctx, 0, 10)
		if err != nil || len(recs) != 1 {
			t.Errorf("AuditAfter(0, 10) = %d records, %v; want 1", len(recs), err)
		}
	}},
	{"InTx/Panic", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("InTx(panicking fn) did not panic")
				}
			}()
			s.InTx(ctx, func(tx store.Tx) error {
				tn, mk := newTenant("acme")
				check(t, "tx.CreateTenant", tx.CreateTenant(ctx, tn, mk))
				panic("fn panicked")
			})
		}()
		_, err := s.GetTenant(ctx, "acme")
		wantErr(t, "GetTenant(acme)", err, store.ErrNotFound)
		tn, mk := newTenant("acme")
		check(t, "CreateTenant after the panic", s.CreateTenant(ctx, tn, mk))
	}},
	{"InTx/Concurrent", func(t *testing.T, s store.Store) {
		// Transactions that append, and appends on their own, all at
		// once: the log stays one chain with no gaps.
		ctx := t.Context()
		const n = 20
		errs := together(2*n, func(i int) error {
			if i >= n {
				_, err := s.AppendAudit(ctx, chain(newAudit(i)), nil)
				return err
			}
			return s.InTx(ctx, func(tx store.Tx) error {
				k, v := newKey(fmt.Sprintf("k%02d", i), false)
				if err := tx.CreateKey(ctx, k, v); err != nil {
					return err
				}
				_, err := tx.AppendAudit(ctx, chain(newAudit(i)), nil)
				return err
			})
		})
		for i, err := range errs {
			check(t, fmt.Sprintf("call #%d", i), err)
		}
		recs, err := s.AuditAfter(ctx, 0, 4*n)
		check(t, fmt.Sprintf("AuditAfter(0, %d)", 4*n), err)
		if len(recs) != 2*n {
			t.Fatalf("AuditAfter(0, %d) = %d records, want %d", 4*n, len(recs), 2*n)
		}
		checkChain(t, recs, 1, nil)
		for i := range n {
			if _, err := s.GetKey(ctx, fmt.Sprintf("k%02d", i)); err != nil {
				t.Errorf("GetKey(k%02d) = %v, want nil", i, err)
			}
		}
	}},
}
