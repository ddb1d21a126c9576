package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// TestGroupCommit: on SQLite, InTx calls that arrive while a transaction
// runs share the next one. Held open by a first call until 199 more wait,
// they run as ceil(199/128) = 2 more groups; each caller gets its own
// outcome: a function that fails or panics leaves nothing behind and does
// not undo the others of its group.
func TestGroupCommit(t *testing.T) {
	ctx := t.Context()
	db := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	defer db.Close()
	errRefused := errors.New("refused by the test")
	const calls = 200
	outcome := func(i int) string {
		switch {
		case i%7 == 3:
			return "fail" // writes, then fails
		case i%50 == 11:
			return "panic" // writes, then panics
		}
		return "ok"
	}
	release := make(chan struct{})
	errs := make([]error, calls)
	panics := make([]any, calls)
	var wg sync.WaitGroup
	call := func(i int) {
		defer wg.Done()
		defer func() { panics[i] = recover() }()
		errs[i] = db.InTx(ctx, func(tx store.Tx) error {
			if i == 0 {
				<-release
			}
			if _, err := tx.PutSettingIfAbsent(ctx, fmt.Sprintf("g-%03d", i), []byte{byte(i)}); err != nil {
				return err
			}
			switch outcome(i) {
			case "fail":
				return errRefused
			case "panic":
				panic(fmt.Sprintf("panic %d", i))
			}
			return nil
		})
	}
	wg.Add(1)
	go call(0)
	for start := time.Now(); sqlstore.Pending(db) != 0 || sqlstore.Groups(db) == 0; {
		if time.Since(start) > 30*time.Second {
			t.Fatal("call 0 did not start a group")
		}
		time.Sleep(time.Millisecond) // until call 0's group runs
	}
	for i := 1; i < calls; i++ {
		wg.Add(1)
		go call(i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sqlstore.Pending(db) < calls-1 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls pending", sqlstore.Pending(db))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got := sqlstore.Groups(db); got != 3 {
		t.Errorf("%d calls ran in %d groups, want 3", calls, got)
	}
	for i := range calls {
		_, gerr := db.GetSetting(ctx, fmt.Sprintf("g-%03d", i))
		switch outcome(i) {
		case "ok":
			if errs[i] != nil || panics[i] != nil || gerr != nil {
				t.Errorf("call %d: InTx = %v, panic %v; its setting: %v", i, errs[i], panics[i], gerr)
			}
		case "fail":
			if !errors.Is(errs[i], errRefused) || !errors.Is(gerr, store.ErrNotFound) {
				t.Errorf("failing call %d: InTx = %v (want the function's error); its setting: %v (want not found)", i, errs[i], gerr)
			}
		case "panic":
			if panics[i] != fmt.Sprintf("panic %d", i) || !errors.Is(gerr, store.ErrNotFound) {
				t.Errorf("panicking call %d: recovered %v; its setting: %v (want not found)", i, panics[i], gerr)
			}
		}
	}
}

// TestGroupCommitCanceled: a call whose context ends before its group
// runs is not run, and says so.
func TestGroupCommitCanceled(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	defer db.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	err := db.InTx(ctx, func(store.Tx) error { ran = true; return nil })
	if !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("InTx(canceled) = %v, ran %v; want context.Canceled, not run", err, ran)
	}
}

// TestGroupCommitGoexit: a function that ends its goroutine
// (runtime.Goexit, what t.FailNow does when a test's check fails inside
// InTx) fails its group's calls with nothing stored, and the calls after it
// still run: before, the group's callers waited forever.
func TestGroupCommitGoexit(t *testing.T) {
	ctx := t.Context()
	db := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	defer db.Close()
	done := make(chan error, 1)
	go func() {
		done <- db.InTx(ctx, func(tx store.Tx) error {
			if _, err := tx.PutSettingIfAbsent(ctx, "gone", []byte{1}); err != nil {
				return err
			}
			runtime.Goexit()
			return nil
		})
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("InTx whose function called runtime.Goexit = nil, want an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("InTx whose function called runtime.Goexit did not return")
	}
	if _, err := db.GetSetting(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the setting written before runtime.Goexit: %v, want not found", err)
	}
	if err := db.InTx(ctx, func(tx store.Tx) error {
		_, err := tx.PutSettingIfAbsent(ctx, "after", []byte{2})
		return err
	}); err != nil {
		t.Fatalf("InTx after a Goexit = %v", err)
	}
	if _, err := db.GetSetting(ctx, "after"); err != nil {
		t.Errorf("GetSetting(after) = %v", err)
	}
}

// TestGroupCommitSignsOnce: a group's audit records are signed once, the
// last of them as committed, even when the group's last call appended a
// record and then failed (its savepoint rolled back, the record before it
// is the one signed); the log verifies with the audit key's public key.
func TestGroupCommitSignsOnce(t *testing.T) {
	ctx := t.Context()
	db := openSQLite(t, filepath.Join(t.TempDir(), "g.db"))
	defer db.Close()
	key, err := kcrypto.GenerateLogKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()
	log := audit.New(key, nil)
	errRefused := errors.New("refused by the test")
	const calls = 12 // call 0 holds the first group open; 1 to 11 share the next
	release := make(chan struct{})
	errs := make([]error, calls)
	var wg sync.WaitGroup
	call := func(i int) {
		defer wg.Done()
		errs[i] = db.InTx(ctx, func(tx store.Tx) error {
			ev := audit.Event{Action: fmt.Sprintf("call-%d", i), Outcome: "ok"}
			if i == 0 {
				ev = audit.Event{Action: audit.ActionKeyCreated, KeyID: key.Public().ID(), Outcome: "ok"}
				<-release
			}
			if _, err := log.Append(ctx, tx, ev); err != nil {
				return err
			}
			if i == 5 || i == calls-1 {
				return errRefused // appended, then failed: the record is undone
			}
			return nil
		})
	}
	wg.Add(1)
	go call(0)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for start := time.Now(); !ok(); time.Sleep(time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("waiting for %s", what)
			}
		}
	}
	waitFor("call 0's group", func() bool { return sqlstore.Pending(db) == 0 && sqlstore.Groups(db) == 1 })
	for i := 1; i < calls; i++ { // one at a time: the group runs them in this order
		wg.Add(1)
		go call(i)
		waitFor(fmt.Sprintf("call %d to wait", i), func() bool { return sqlstore.Pending(db) == i })
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if want := (i == 5 || i == calls-1); want != errors.Is(err, errRefused) || !want && err != nil {
			t.Errorf("call %d: InTx = %v", i, err)
		}
	}
	if got := sqlstore.Groups(db); got != 2 {
		t.Fatalf("%d calls ran in %d groups, want 2", calls, got)
	}
	recs, err := db.AuditAfter(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var signed []string
	for _, r := range recs {
		if r.Sig != nil {
			signed = append(signed, r.Action)
		}
	}
	// Records: the key's creation (group 1), calls 1-4 and 6-10 (group 2).
	if len(recs) != calls-2 || fmt.Sprint(signed) != fmt.Sprintf("[%s call-%d]", audit.ActionKeyCreated, calls-2) {
		t.Errorf("%d records, signed: %v; want %d, the key's creation and call-%d's", len(recs), signed, calls-2, calls-2)
	}
	res, err := audit.Verify(ctx, db, key.Public())
	if err != nil || res.Records != int64(len(recs)) {
		t.Errorf("audit.Verify = %+v, %v; want all %d records", res, err, len(recs))
	}
}
