package enclavetest

import (
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

func testClose(t *testing.T, fresh opener) {
	e := fresh(t)
	ctx := t.Context()

	// Handles taken before Close.
	h := Hold(t, e)
	transport, err := e.TransportKey(ctx, api.KEMP256)
	if err != nil && !errors.Is(err, enclave.ErrUnsupportedKEM) {
		t.Fatal(err)
	}
	var ct []byte
	if transport != nil {
		if ct, err = kcrypto.HPKESeal(transport.PublicKey(), nil, []byte("data key")); err != nil {
			t.Fatal(err)
		}
	}

	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close() twice = %v, want nil", err)
	}

	closed := []struct {
		name string
		call func() error
	}{
		{"IdentityKey", func() error { _, err := e.IdentityKey(ctx); return err }},
		{"TransportKey", func() error { _, err := e.TransportKey(ctx, api.KEMP256); return err }},
		{"Protect", func() error { _, err := e.Protect(secret.Copy([]byte("k"))); return err }},
		{"LocalSeal", func() error { _, err := e.LocalSeal(ctx, h.Plaintext, nil); return err }},
		{"LocalOpen", func() error { _, err := e.LocalOpen(ctx, h.Blob, nil); return err }},
	}
	for _, tc := range closed {
		if err := tc.call(); !errors.Is(err, enclave.ErrClosed) {
			t.Errorf("%s() after Close() = %v, want ErrClosed", tc.name, err)
		}
	}

	if err := h.Sign(); err == nil {
		t.Error("identity Sign() after Close() succeeded")
	}
	if got, err := h.Protected.Open(); err == nil {
		got.Wipe()
		t.Error("Protected.Open() after Close() succeeded")
	}
	if transport != nil {
		if _, err := kcrypto.HPKEOpen(transport, nil, ct); err == nil {
			t.Error("HPKEOpen() with the transport key after Close() succeeded")
		}
	}
}
