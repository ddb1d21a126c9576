// Package sealtest is the conformance suite every seal.Sealer passes (the
// file seal and the PKCS#11 seal). An implementation's tests call Run.
package sealtest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/secret"
)

// Run runs the conformance suite, each check in its own subtest.
//
// open returns a Sealer over the state that belongs to t: the first call
// for a given t starts from fresh state (a new root key), and later calls
// with the same t reopen that same state, as a restarted KMS would. The
// suite closes every Sealer open returns; open must fail t rather than
// return nil.
func Run(t *testing.T, open func(t *testing.T) seal.Sealer) {
	tests := []struct {
		name string
		fn   func(*testing.T, func(*testing.T) seal.Sealer)
	}{
		{"RoundTrip", testRoundTrip},
		{"EmptyPlaintext", testEmptyPlaintext},
		{"NilAndEmptyAADAgree", testNilAndEmptyAAD},
		{"AADMismatch", testAADMismatch},
		{"BitFlips", testBitFlips},
		{"Truncation", testTruncation},
		{"SealsDiffer", testSealsDiffer},
		{"PlaintextStaysCallers", testPlaintextStaysCallers},
		{"Reopen", testReopen},
		{"OtherStateDoesNotOpen", testOtherState},
		{"Concurrent", testConcurrent},
		{"Name", testName},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

// openT calls open and closes the Sealer when t ends.
func openT(t *testing.T, open func(*testing.T) seal.Sealer) seal.Sealer {
	t.Helper()
	s := open(t)
	if s == nil {
		t.Fatal("open returned a nil Sealer")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func mustSeal(t *testing.T, s seal.Sealer, pt, aad []byte) []byte {
	t.Helper()
	sealed, err := s.Seal(context.Background(), secret.Copy(pt), aad)
	if err != nil {
		t.Fatalf("Seal() error %v", err)
	}
	return sealed
}

func checkOpens(t *testing.T, s seal.Sealer, sealed, aad, want []byte) {
	t.Helper()
	got, err := s.Open(context.Background(), sealed, aad)
	if err != nil {
		t.Fatalf("Open() error %v", err)
	}
	defer got.Wipe()
	if !bytes.Equal(got.Expose(), want) {
		t.Fatalf("Open() = %x, want %x", got.Expose(), want)
	}
}

func checkErrOpen(t *testing.T, s seal.Sealer, sealed, aad []byte, what string) {
	t.Helper()
	got, err := s.Open(context.Background(), sealed, aad)
	if !errors.Is(err, seal.ErrOpen) {
		got.Wipe()
		t.Fatalf("Open(%s) error = %v, want seal.ErrOpen", what, err)
	}
	if got != nil {
		t.Fatalf("Open(%s) returned plaintext with an error", what)
	}
}

func testRoundTrip(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	for _, tt := range []struct {
		name    string
		pt, aad []byte
	}{
		{"key with aad", bytes.Repeat([]byte{0x42}, 32), []byte("tenant=acme/tmk/v1")},
		{"no aad", []byte("tenant HMAC key"), nil},
		{"large", bytes.Repeat([]byte("0123456789abcdef"), 4096), []byte("ca-key")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sealed := mustSeal(t, s, tt.pt, tt.aad)
			if bytes.Contains(sealed, tt.pt) {
				t.Error("sealed blob contains the plaintext")
			}
			checkOpens(t, s, sealed, tt.aad, tt.pt)
		})
	}
}

func testEmptyPlaintext(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	for _, pt := range []*secret.Bytes{secret.New(nil), secret.Copy([]byte{}), nil} {
		sealed, err := s.Seal(context.Background(), pt, []byte("aad"))
		if err != nil {
			t.Fatalf("Seal(empty) error %v", err)
		}
		checkOpens(t, s, sealed, []byte("aad"), nil)
		checkErrOpen(t, s, sealed, []byte("other"), "empty plaintext, other aad")
	}
}

func testNilAndEmptyAAD(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	sealed := mustSeal(t, s, []byte("pt"), nil)
	checkOpens(t, s, sealed, []byte{}, []byte("pt"))
	sealed = mustSeal(t, s, []byte("pt"), []byte{})
	checkOpens(t, s, sealed, nil, []byte("pt"))
}

func testAADMismatch(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	sealed := mustSeal(t, s, []byte("secret"), []byte("tenant=acme"))
	for _, aad := range [][]byte{nil, []byte("tenant=acmf"), []byte("tenant=acme "), []byte("tenant=acm"), []byte("TENANT=acme")} {
		checkErrOpen(t, s, sealed, aad, "aad "+string(aad))
	}
}

func testBitFlips(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	aad := []byte("aad")
	sealed := mustSeal(t, s, []byte("a short secret"), aad)
	for i := range len(sealed) * 8 {
		flipped := bytes.Clone(sealed)
		flipped[i/8] ^= 1 << (i % 8)
		checkErrOpen(t, s, flipped, aad, "bit flip")
	}
	for i := range len(aad) * 8 {
		other := bytes.Clone(aad)
		other[i/8] ^= 1 << (i % 8)
		checkErrOpen(t, s, sealed, other, "aad bit flip")
	}
}

func testTruncation(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	sealed := mustSeal(t, s, []byte("a short secret"), nil)
	for n := range len(sealed) {
		checkErrOpen(t, s, sealed[:n], nil, "truncated")
	}
	checkErrOpen(t, s, append(bytes.Clone(sealed), 0), nil, "extended")
}

func testSealsDiffer(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	a := mustSeal(t, s, []byte("same"), []byte("same"))
	b := mustSeal(t, s, []byte("same"), []byte("same"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same input are equal")
	}
}

func testPlaintextStaysCallers(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	pt := secret.Copy([]byte("caller's key"))
	sealed, err := s.Seal(context.Background(), pt, nil)
	if err != nil {
		t.Fatalf("Seal() error %v", err)
	}
	if string(pt.Expose()) != "caller's key" {
		t.Fatal("Seal changed its plaintext")
	}
	pt.Wipe()
	got, err := s.Open(context.Background(), sealed, nil)
	if err != nil {
		t.Fatalf("Open() error %v", err)
	}
	again, err := s.Open(context.Background(), sealed, nil)
	if err != nil {
		t.Fatalf("Open() error %v", err)
	}
	got.Wipe()
	defer again.Wipe()
	if string(again.Expose()) != "caller's key" {
		t.Fatal("wiping one Open result changed another")
	}
}

func testReopen(t *testing.T, open func(*testing.T) seal.Sealer) {
	first := open(t)
	sealed := mustSeal(t, first, []byte("tmk v1"), []byte("acme"))
	if err := first.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	second := openT(t, open)
	checkOpens(t, second, sealed, []byte("acme"), []byte("tmk v1"))
	checkErrOpen(t, second, sealed, []byte("other"), "reopened, other aad")
}

func testOtherState(t *testing.T, open func(*testing.T) seal.Sealer) {
	var sealed []byte
	t.Run("a", func(t *testing.T) { sealed = mustSeal(t, openT(t, open), []byte("x"), nil) })
	t.Run("b", func(t *testing.T) { checkErrOpen(t, openT(t, open), sealed, nil, "other root key") })
}

func testConcurrent(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := openT(t, open)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			pt := []byte{byte(i), 1, 2, 3}
			for range 20 {
				sealed, err := s.Seal(context.Background(), secret.Copy(pt), pt)
				if err != nil {
					t.Errorf("Seal() error %v", err)
					return
				}
				got, err := s.Open(context.Background(), sealed, pt)
				if err != nil || !bytes.Equal(got.Expose(), pt) {
					t.Errorf("Open() = %x, %v; want %x", got.Expose(), err, pt)
					return
				}
				got.Wipe()
			}
		})
	}
	wg.Wait()
}

func testName(t *testing.T, open func(*testing.T) seal.Sealer) {
	if openT(t, open).Name() == "" {
		t.Error("Name() is empty")
	}
}

func testClosed(t *testing.T, open func(*testing.T) seal.Sealer) {
	s := open(t)
	sealed := mustSeal(t, s, []byte("x"), nil)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, err := s.Seal(context.Background(), secret.Copy([]byte("x")), nil); err == nil {
		t.Error("Seal after Close succeeded")
	}
	if got, err := s.Open(context.Background(), sealed, nil); err == nil {
		got.Wipe()
		t.Error("Open after Close succeeded")
	}
}
