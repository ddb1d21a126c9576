package enclavetest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

const (
	workers    = 16
	iterations = 20
)

func testConcurrent(t *testing.T, fresh opener) {
	t.Run("Use", func(t *testing.T) {
		e := fresh(t)
		pubs := make([]crypto.PublicKey, workers)
		transports := make([][]byte, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				// First calls race to create the keys.
				signer, err := e.IdentityKey(t.Context())
				if err != nil {
					t.Errorf("IdentityKey() = %v", err)
					return
				}
				pubs[w] = signer.Public()
				if tk, err := e.TransportKey(t.Context(), api.KEMP256); err == nil {
					transports[w] = tk.PublicKey().Bytes()
				} else if !errors.Is(err, enclave.ErrUnsupportedKEM) {
					t.Errorf("TransportKey() = %v", err)
				}
				for i := range iterations {
					if err := useOnce(t, e, signer, fmt.Sprintf("worker %d iteration %d", w, i)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		for w := 1; w < workers; w++ {
			if pubs[w] == nil || !pubs[0].(*ecdsa.PublicKey).Equal(pubs[w]) {
				t.Fatalf("concurrent first IdentityKey() calls returned different keys")
			}
			if !bytes.Equal(transports[0], transports[w]) {
				t.Fatalf("concurrent first TransportKey() calls returned different keys")
			}
		}
	})

	// Close while operations run: each call either works or fails with
	// ErrClosed, and nothing panics.
	t.Run("Close", func(t *testing.T) {
		e := fresh(t)
		ctx := t.Context()
		var wg, warm sync.WaitGroup
		warm.Add(workers)
		for w := range workers {
			wg.Go(func() {
				for i := range iterations {
					if i == 1 {
						warm.Done() // Close comes after every worker's first round
					}
					p, err := e.Protect(secret.Copy([]byte("data key")))
					if err == nil {
						p.Destroy()
					}
					okOrClosed(t, "Protect", err)
					pt := secret.Copy([]byte("data key"))
					blob, err := e.LocalSeal(ctx, pt, []byte{byte(w)})
					pt.Wipe()
					okOrClosed(t, "LocalSeal", err)
					if err == nil {
						got, err := e.LocalOpen(ctx, blob, []byte{byte(w)})
						got.Wipe()
						okOrClosed(t, "LocalOpen", err)
					}
					_, err = e.IdentityKey(ctx)
					okOrClosed(t, "IdentityKey", err)
				}
			})
		}
		warm.Wait()
		if err := e.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		wg.Wait()
	})
}

func okOrClosed(t *testing.T, op string, err error) {
	if err != nil && !errors.Is(err, enclave.ErrClosed) {
		t.Errorf("%s() racing Close() = %v, want nil or ErrClosed", op, err)
	}
}

// useOnce exercises Protect/Open, LocalSeal/LocalOpen and Sign once.
func useOnce(t *testing.T, e enclave.Enclave, signer crypto.Signer, label string) error {
	want := []byte(label)
	p, err := e.Protect(secret.Copy(want))
	if err != nil {
		return fmt.Errorf("Protect() = %w", err)
	}
	got, err := p.Open()
	if err != nil {
		return fmt.Errorf("Open() = %w", err)
	}
	ok := bytes.Equal(got.Expose(), want)
	got.Wipe()
	p.Destroy()
	if !ok {
		return errors.New("Open() returned other material")
	}

	pt := secret.Copy(want)
	defer pt.Wipe()
	blob, err := e.LocalSeal(t.Context(), pt, want)
	if err != nil {
		return fmt.Errorf("LocalSeal() = %w", err)
	}
	opened, err := e.LocalOpen(t.Context(), blob, want)
	if err != nil {
		return fmt.Errorf("LocalOpen() = %w", err)
	}
	ok = opened.Equal(pt)
	opened.Wipe()
	if !ok {
		return errors.New("LocalOpen() returned other plaintext")
	}

	digest := sha256.Sum256(want)
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("Sign() = %w", err)
	}
	if !ecdsa.VerifyASN1(signer.Public().(*ecdsa.PublicKey), digest[:], sig) {
		return errors.New("signature does not verify")
	}
	return nil
}
