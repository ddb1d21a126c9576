package attest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/tpm"
)

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t)
	res, err := f.verifier.Verify(t.Context(), f.ev, f.want)
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if want := tpm.AKFingerprint(f.ev.AKPublic); res.AKFingerprint != want {
		t.Errorf("AKFingerprint = %s, want %s", res.AKFingerprint, want)
	}
	if len(res.PCRs) != 8 {
		t.Errorf("len(PCRs) = %d, want 8", len(res.PCRs))
	}
	for i, v := range f.ev.PCRs {
		if !bytes.Equal(res.PCRs[i], v) {
			t.Errorf("PCR %d = %x, want %x", i, res.PCRs[i], v)
		}
	}
	res.PCRs[0][0] ^= 1
	if bytes.Equal(res.PCRs[0], f.ev.PCRs[0]) {
		t.Error("Result.PCRs aliases the evidence")
	}

	// A policy over the current values accepts too.
	policy := map[int][]byte{}
	for i, v := range f.ev.PCRs {
		policy[i] = v
	}
	v := &TPMVerifier{AllowedAKs: f.verifier.AllowedAKs, PCRPolicy: policy}
	if _, err := v.Verify(t.Context(), f.ev, f.want); err != nil {
		t.Errorf("Verify(with a matching PCR policy) = %v", err)
	}
}

func TestVerifyUnknownAK(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	for name, v := range map[string]*TPMVerifier{
		"zero verifier":      {},
		"empty allow-list":   {AllowedAKs: map[string]bool{}},
		"another AK allowed": other.verifier,
		"AK listed as false": {AllowedAKs: map[string]bool{AKFingerprint(f.ev.AKPublic): false}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Verify(t.Context(), f.ev, f.want); !errors.Is(err, ErrUnknownAK) {
				t.Errorf("Verify() = %v, want ErrUnknownAK", err)
			}
		})
	}
}

func TestVerifyTamperedQuote(t *testing.T) {
	f := newFixture(t)
	for i := range f.ev.Quote {
		ev := clone(f.ev)
		ev.Quote[i] ^= 0x01
		if _, err := f.verifier.Verify(t.Context(), ev, f.want); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("Verify(quote byte %d flipped) = %v, want ErrBadSignature", i, err)
		}
	}
}

func TestVerifyTamperedSignature(t *testing.T) {
	f := newFixture(t)
	for i := range f.ev.Signature {
		ev := clone(f.ev)
		ev.Signature[i] ^= 0x01
		_, err := f.verifier.Verify(t.Context(), ev, f.want)
		if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Verify(signature byte %d flipped) = %v, want ErrBadSignature or ErrMalformed", i, err)
		}
	}
}

// TestVerifyOtherAKsSignature presents one TPM's quote as another allowed
// AK's.
func TestVerifyOtherAKsSignature(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	ev := clone(f.ev)
	ev.AKPublic = other.ev.AKPublic
	v := &TPMVerifier{AllowedAKs: map[string]bool{
		AKFingerprint(f.ev.AKPublic):     true,
		AKFingerprint(other.ev.AKPublic): true,
	}}
	if _, err := v.Verify(t.Context(), ev, f.want); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(quote by another AK) = %v, want ErrBadSignature", err)
	}
}

func TestVerifyNonceMismatch(t *testing.T) {
	f := newFixture(t)
	stale := f.attest(t, []byte("an old challenge"))
	fresh := []byte("fresh KMS challenge")

	// The same challenge, but the quote binds another CSR key.
	swapped := enclave.QualifyingData(fresh, []byte("attacker's SPKI"), f.tp)
	otherTransport := enclave.QualifyingData(fresh, f.spki, api.PublicKey{KEM: api.KEMP256, PublicKey: []byte("other")})

	staleRelabelled := clone(stale)
	staleRelabelled.Nonce = fresh

	for _, tc := range []struct {
		name string
		ev   *api.Attestation
		want Expected
	}{
		{"stale evidence", stale, f.want},
		{"stale evidence with the fresh nonce field", staleRelabelled, f.want},
		{"other identity key", f.ev, Expected{Nonce: fresh, QualifyingData: swapped}},
		{"other transport key", f.ev, Expected{Nonce: fresh, QualifyingData: otherTransport}},
		{"other nonce expected", f.ev, Expected{Nonce: []byte("other"), QualifyingData: f.want.QualifyingData}},
		{"nothing expected", f.ev, Expected{}},
		{"no qualifying data expected", f.ev, Expected{Nonce: fresh}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.verifier.Verify(t.Context(), tc.ev, tc.want); !errors.Is(err, ErrNonceMismatch) {
				t.Errorf("Verify() = %v, want ErrNonceMismatch", err)
			}
		})
	}
}

func TestVerifyPCRMismatch(t *testing.T) {
	f := newFixture(t)
	edit := func(change func(map[int][]byte)) *api.Attestation {
		ev := clone(f.ev)
		change(ev.PCRs)
		return ev
	}
	zero := make([]byte, 32)
	for _, tc := range []struct {
		name string
		ev   *api.Attestation
	}{
		{"wrong value", edit(func(p map[int][]byte) { p[3][0] ^= 1 })},
		{"two values swapped", edit(func(p map[int][]byte) { p[1], p[2] = p[2], append([]byte{1}, p[1][1:]...) })},
		{"missing PCR", edit(func(p map[int][]byte) { delete(p, 7) })},
		{"extra PCR", edit(func(p map[int][]byte) { p[8] = zero })},
		{"PCR moved", edit(func(p map[int][]byte) { p[8] = p[7]; delete(p, 7) })},
		{"short value", edit(func(p map[int][]byte) { p[0] = p[0][:31] })},
		{"no PCRs", edit(func(p map[int][]byte) { clear(p) })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.verifier.Verify(t.Context(), tc.ev, f.want); !errors.Is(err, ErrPCRMismatch) {
				t.Errorf("Verify() = %v, want ErrPCRMismatch", err)
			}
		})
	}
}

func TestVerifyPCRPolicy(t *testing.T) {
	f := newFixture(t)
	wrong := bytes.Clone(f.ev.PCRs[7])
	wrong[31] ^= 1
	for name, policy := range map[string]map[int][]byte{
		"wrong value":      {0: f.ev.PCRs[0], 7: wrong},
		"PCR not quoted":   {10: make([]byte, 32)},
		"short value":      {7: f.ev.PCRs[7][:16]},
		"negative index":   {-1: make([]byte, 32)},
		"nil value":        {0: nil},
		"value of another": {0: f.ev.PCRs[0], 1: append([]byte{0xff}, f.ev.PCRs[1][1:]...)},
	} {
		t.Run(name, func(t *testing.T) {
			v := &TPMVerifier{AllowedAKs: f.verifier.AllowedAKs, PCRPolicy: policy}
			if _, err := v.Verify(t.Context(), f.ev, f.want); !errors.Is(err, ErrPCRMismatch) {
				t.Errorf("Verify() = %v, want ErrPCRMismatch", err)
			}
		})
	}
}

func TestVerifyCanceled(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := f.verifier.Verify(ctx, f.ev, f.want); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify(canceled) = %v, want context.Canceled", err)
	}
}

// TestVerifyMalformed feeds truncations and edits of every field, with
// the altered AK allow-listed so parsing is reached. Nothing may panic and
// every refusal is one of the package's errors.
func TestVerifyMalformed(t *testing.T) {
	f := newFixture(t)
	check := func(t *testing.T, ev *api.Attestation, extraAK []byte) {
		t.Helper()
		v := &TPMVerifier{AllowedAKs: map[string]bool{
			AKFingerprint(f.ev.AKPublic): true,
			AKFingerprint(extraAK):       true,
		}}
		if _, err := v.Verify(t.Context(), ev, f.want); err == nil || !isSentinel(err) {
			t.Fatalf("Verify() = %v, want one of the package's errors", err)
		}
	}
	t.Run("nil evidence", func(t *testing.T) { check(t, nil, nil) })
	t.Run("empty evidence", func(t *testing.T) { check(t, &api.Attestation{Nonce: f.want.Nonce}, nil) })
	t.Run("AK truncated", func(t *testing.T) {
		for i := range f.ev.AKPublic {
			ev := clone(f.ev)
			ev.AKPublic = ev.AKPublic[:i]
			check(t, ev, ev.AKPublic)
		}
	})
	t.Run("AK trailing byte", func(t *testing.T) {
		ev := clone(f.ev)
		ev.AKPublic = append(ev.AKPublic, 0)
		check(t, ev, ev.AKPublic)
	})
	t.Run("AK byte flipped", func(t *testing.T) {
		// Some bits (reserved or irrelevant attributes) leave the key
		// itself unchanged: then the quote still verifies, under the
		// altered AK's own fingerprint, which is what the allow-list names.
		for i := range f.ev.AKPublic {
			ev := clone(f.ev)
			ev.AKPublic[i] ^= 0x01
			v := &TPMVerifier{AllowedAKs: map[string]bool{AKFingerprint(ev.AKPublic): true}}
			res, err := v.Verify(t.Context(), ev, f.want)
			if err == nil && res.AKFingerprint != AKFingerprint(ev.AKPublic) {
				t.Fatalf("byte %d: accepted under fingerprint %s", i, res.AKFingerprint)
			}
			if err != nil && !isSentinel(err) {
				t.Fatalf("byte %d: Verify() = %v, want one of the package's errors", i, err)
			}
		}
	})
	t.Run("quote truncated", func(t *testing.T) {
		for i := range f.ev.Quote {
			ev := clone(f.ev)
			ev.Quote = ev.Quote[:i]
			check(t, ev, nil)
		}
	})
	t.Run("signature truncated", func(t *testing.T) {
		for i := range f.ev.Signature {
			ev := clone(f.ev)
			ev.Signature = ev.Signature[:i]
			check(t, ev, nil)
		}
	})
}

func TestAKFingerprintMatchesEnclave(t *testing.T) {
	for _, b := range [][]byte{nil, {}, []byte("ak"), bytes.Repeat([]byte{0xab}, 90)} {
		if got, want := AKFingerprint(b), tpm.AKFingerprint(b); got != want {
			t.Errorf("AKFingerprint(%x) = %s, tpm.AKFingerprint = %s", b, got, want)
		}
	}
}
