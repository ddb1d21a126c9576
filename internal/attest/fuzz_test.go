package attest

import (
	"bytes"
	"context"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// encodePCRs flattens PCR values for the fuzzer: index byte || 32-byte
// value, repeated. decodePCRs reads a trailing partial entry as a short
// value.
func encodePCRs(pcrs map[int][]byte) []byte {
	var b []byte
	for i := range 24 {
		if v, ok := pcrs[i]; ok {
			b = append(b, byte(i))
			b = append(b, v...)
		}
	}
	return b
}

func decodePCRs(b []byte) map[int][]byte {
	if b == nil {
		return nil
	}
	m := map[int][]byte{}
	for len(b) > 0 {
		n := min(len(b), 33)
		m[int(b[0])] = b[1:n]
		b = b[n:]
	}
	return m
}

// FuzzVerify feeds arbitrary evidence to a verifier that allows the golden
// AK and whatever AK the input carries (so parsing and signature checks are
// reached). Properties: no panic; every refusal is one of the package's
// errors; only the genuine quote is ever accepted.
func FuzzVerify(f *testing.F) {
	g := loadGolden(f)
	ev := g.Attestation
	f.Add(ev.Nonce, ev.AKPublic, ev.Quote, ev.Signature, encodePCRs(ev.PCRs))
	want := g.expected()
	f.Fuzz(func(t *testing.T, nonce, akPublic, quote, sig, pcrs []byte) {
		v := &TPMVerifier{
			AllowedAKs: map[string]bool{g.AKFingerprint: true, AKFingerprint(akPublic): true},
			PCRPolicy:  map[int][]byte{0: ev.PCRs[0]},
		}
		in := &api.Attestation{Nonce: nonce, AKPublic: akPublic, Quote: quote, Signature: sig, PCRs: decodePCRs(pcrs)}
		res, err := v.Verify(context.Background(), in, want)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("Verify() = %v, not one of the package's errors", err)
			}
			return
		}
		// The verifier here also allows whatever AK the input carries, so a
		// re-encoding of the genuine AK's public area (another fingerprint,
		// same key) may verify the genuine quote; in production the
		// allow-list holds exact fingerprints, so only the listed encoding
		// passes. What must never verify is any other quote.
		if !bytes.Equal(quote, ev.Quote) {
			t.Fatalf("Verify() accepted a quote other than the genuine one")
		}
		if res.AKFingerprint != AKFingerprint(akPublic) {
			t.Fatalf("Verify() reported AK %s for evidence carrying %s", res.AKFingerprint, AKFingerprint(akPublic))
		}
	})
}
