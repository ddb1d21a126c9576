// Package storetest is the conformance suite every store.Store
// implementation must pass. An implementation's test calls Run with a
// function that opens a fresh, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			db, err := sqlstore.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "kms.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return db
//		})
//	}
//
// Every test gets its own store, which Run closes when the test ends, and
// the tests run in parallel (open must be safe for concurrent use).
package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// Run runs the conformance suite against the stores open returns. open is
// called once per test, from parallel tests, and must return a new, empty
// store; Run closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	fresh := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close() = %v, want nil", err)
			}
		})
		return s
	}
	groups := []struct {
		name  string
		tests []test
	}{
		{"Settings", settingsTests},
		{"Tenants", tenantsTests},
		{"Apps", appsTests},
		{"Certs", certsTests},
		{"Keys", keysTests},
		{"KeyLifecycle", lifecycleTests},
		{"OneTime", oneTimeTests},
		{"Instances", instancesTests},
		{"Enrollment", enrollTests},
		{"Revocations", revocationsTests},
		{"Audit", auditTests},
		{"Sealed", sealedTests},
		{"Transactions", txTests},
		{"Leases", leasesTests},
		{"Attestation", attestationTests},
		{"Approvals", approvalsTests},
		{"Listing", listingTests},
		{"KeyCheckValues", kcvTests},
		{"Ceremonies", ceremoniesTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel() // each on a store of its own
					tt.fn(t, fresh(t))
				})
			}
		})
	}
}

// test is one conformance test, run on a fresh store.
type test struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// together runs fn(0) … fn(n-1) in goroutines started at once and
// returns their errors by i.
func together(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// t0 is the suite's reference time: nanosecond precision and not UTC, so a
// round trip that drops either shows.
var t0 = time.Date(2026, 5, 4, 3, 2, 1, 123456789, time.FixedZone("UTC+2", 2*60*60))

func at(d time.Duration) time.Time { return t0.Add(d) }

func ptr(t time.Time) *time.Time { return &t }

func timePtrEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// check fails t unless err is nil.
func check(t *testing.T, call string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v, want nil", call, err)
	}
}

// wantErr fails t unless errors.Is(err, want).
func wantErr(t *testing.T, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", call, err, want)
	}
}

// wantEqual fails t unless call returned no error (fatally, as check) and
// got equal to want, as eq compares them.
func wantEqual[T any](t *testing.T, call string, got T, err error, want T, eq func(a, b T) bool) {
	t.Helper()
	check(t, call, err)
	if !eq(got, want) {
		t.Errorf("%s = %s, want %s", call, show(got), show(want))
	}
}

// wantList fails t unless call returned no error (fatally, as check) and
// the elements of want, in order, as eq compares them. It reports whether
// got had want's length: when not, it fails t without comparing elements,
// and a caller with nothing more to check stops (t.FailNow).
func wantList[T any](t *testing.T, call string, got []T, err error, want []T, eq func(a, b T) bool) bool {
	t.Helper()
	check(t, call, err)
	if len(got) != len(want) {
		t.Errorf("%s = %s, want %s", call, show(got), show(want))
		return false
	}
	for i := range want {
		if !eq(got[i], want[i]) {
			t.Errorf("%s[%d] = %s, want %s", call, i, show(got[i]), show(want[i]))
		}
	}
	return true
}

// wantOutcome checks the error of call against want: nil wants none (and
// fails t fatally, as check), anything else an error that is want (as
// wantErr). It reports whether want was nil: the call was to succeed.
func wantOutcome(t *testing.T, call string, err, want error) bool {
	t.Helper()
	if want == nil {
		check(t, call, err)
		return true
	}
	wantErr(t, call, err, want)
	return false
}

// succeeded returns how many of the racing calls' errs are nil, and fails
// t for each other error that is none of refusals: the errors a call that
// lost the race may return. call names the racing calls in messages.
func succeeded(t *testing.T, call string, errs []error, refusals ...error) int {
	t.Helper()
	n := 0
	for i, err := range errs {
		if err == nil {
			n++
		} else if !slices.ContainsFunc(refusals, func(r error) bool { return errors.Is(err, r) }) {
			t.Errorf("%s #%d = %v, want nil or one of %v", call, i, err, refusals)
		}
	}
	return n
}

// versionStep is one step of a test that adds numbered versions to a
// record (a tenant's master keys, a key's versions).
type versionStep struct {
	version int   // the version added
	want    error // nil: accepted
	current int   // the record's current version afterwards
}

// nextVersionSteps add versions to a record created at version 1: only
// the next version is accepted, once.
var nextVersionSteps = []versionStep{
	{2, nil, 2},
	{2, store.ErrConflict, 2},
	{1, store.ErrConflict, 2},
	{4, store.ErrConflict, 2},
	{0, store.ErrConflict, 2},
	{-1, store.ErrConflict, 2},
	{3, nil, 3},
}

// addVersions runs steps on one record: step i adds the version add(i,
// st.version) builds, wanting st.want, after which current must report
// st.current. It returns the versions accepted, by number. In messages,
// addCall, a format taking the version, names add's call
// ("AddMasterKey(acme, %d)") and currentCall current's.
func addVersions[V any](t *testing.T, steps []versionStep,
	addCall string, add func(step, version int) (V, error),
	currentCall string, current func() (int, error)) map[int]V {
	t.Helper()
	added := map[int]V{}
	for i, st := range steps {
		v, err := add(i, st.version)
		if wantOutcome(t, fmt.Sprintf("step %d: "+addCall, i, st.version), err, st.want) {
			added[st.version] = v
		}
		got, err := current()
		check(t, currentCall, err)
		if got != st.current {
			t.Errorf("after step %d: %s = %d, want %d", i, currentCall, got, st.current)
		}
	}
	return added
}

func eqTenant(a, b store.Tenant) bool {
	return a.Name == b.Name && a.MasterKeyVersion == b.MasterKeyVersion &&
		bytes.Equal(a.SealedHMACKey, b.SealedHMACKey) && a.CreatedAt.Equal(b.CreatedAt)
}

func eqMasterKey(a, b store.MasterKey) bool {
	return a.Tenant == b.Tenant && a.Version == b.Version &&
		bytes.Equal(a.Sealed, b.Sealed) && a.CreatedAt.Equal(b.CreatedAt)
}

func eqApp(a, b store.App) bool {
	return a.Tenant == b.Tenant && a.Name == b.Name && a.Role == b.Role &&
		a.DN == b.DN && a.CreatedAt.Equal(b.CreatedAt)
}

func eqCert(a, b store.Cert) bool {
	return a.Serial == b.Serial && a.Kind == b.Kind && a.Tenant == b.Tenant &&
		a.Subject == b.Subject && a.NotAfter.Equal(b.NotAfter) && timePtrEqual(a.RevokedAt, b.RevokedAt)
}

func eqKey(a, b store.Key) bool {
	return a.KeyID == b.KeyID && a.Tenant == b.Tenant && a.Owner == b.Owner && a.Type == b.Type &&
		a.CurrentVersion == b.CurrentVersion && a.Retained == b.Retained &&
		a.CreatedAt.Equal(b.CreatedAt) && timePtrEqual(a.DisabledAt, b.DisabledAt) &&
		a.MinDecryptionVersion == b.MinDecryptionVersion && a.RotationPeriod == b.RotationPeriod
}

func eqKeyVersion(a, b store.KeyVersion) bool {
	return a.KeyID == b.KeyID && a.Version == b.Version && bytes.Equal(a.EKB, b.EKB) &&
		(a.EKB == nil) == (b.EKB == nil) && a.CreatedAt.Equal(b.CreatedAt) &&
		a.Encryptions == b.Encryptions && a.Bytes == b.Bytes && a.KCV == b.KCV
}

func eqOneTime(a, b store.OneTimeSecret) bool {
	return bytes.Equal(a.Hash, b.Hash) && a.Kind == b.Kind && a.Tenant == b.Tenant &&
		a.Subject == b.Subject && bytes.Equal(a.Payload, b.Payload) && a.CreatedBy == b.CreatedBy &&
		a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt) && timePtrEqual(a.UsedAt, b.UsedAt)
}

func eqInstance(a, b store.Instance) bool {
	return a.ID == b.ID && a.Tenant == b.Tenant && a.CustodianDN == b.CustodianDN &&
		a.Enclave == b.Enclave && a.CertSerial == b.CertSerial && a.WrappingSerial == b.WrappingSerial &&
		a.WrappingKEM == b.WrappingKEM && bytes.Equal(a.WrappingPublic, b.WrappingPublic) &&
		a.EnrolledAt.Equal(b.EnrolledAt) && timePtrEqual(a.RevokedAt, b.RevokedAt)
}

func eqAudit(a, b store.AuditRecord) bool {
	return a.Seq == b.Seq && a.Time.Equal(b.Time) && a.Caller == b.Caller && a.Role == b.Role &&
		a.Action == b.Action && a.Tenant == b.Tenant && a.KeyID == b.KeyID && a.Outcome == b.Outcome &&
		a.Code == b.Code && bytes.Equal(a.PrevHash, b.PrevHash) && bytes.Equal(a.Hash, b.Hash) && bytes.Equal(a.Sig, b.Sig)
}

func eqCheckpoint(a, b store.AuditCheckpoint) bool {
	return a.Seq == b.Seq && a.Time.Equal(b.Time) && bytes.Equal(a.Hash, b.Hash) && bytes.Equal(a.Sig, b.Sig)
}

// show formats v for a failure message: JSON shows times, not the
// addresses of *time.Time fields.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}
