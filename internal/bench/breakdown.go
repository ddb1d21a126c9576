package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/wire"
)

// Stage is one part of a Unix-socket encrypt request's time.
type Stage struct {
	Stage string  `json:"stage"`
	NsOp  float64 `json:"ns_per_request"`
	Share float64 `json:"share"` // of the round trip
	What  string  `json:"what"`
}

// Breakdown measures, one request at a time (no concurrency, so the
// figures add up), where a size-byte encrypt over the sidecar's Unix
// socket spends its time: each stage is timed on its own with
// testing.Benchmark against the bench's own sidecar and key, and
// "transport" is what the round trip takes beyond them (the HTTP/1.1
// server and client, the socket, the scheduler).
func Breakdown(ctx context.Context, env *devenv.Env, size int) ([]Stage, error) {
	if size <= 0 {
		size = 1024
	}
	keys, err := env.NewKeys(ctx, api.KeyAES256GCM, 1, false)
	if err != nil {
		return nil, err
	}
	dk := keys[0]
	if err := env.LoadByRewrap(ctx, [][]byte{dk.EKB}); err != nil {
		return nil, err
	}
	msg := make([]byte, size)
	material := secret.New(kcrypto.Random(kcrypto.AEADKeySize))
	raw, err := kcrypto.NewKey(api.KeyAES256GCM, dk.KeyID, 1, material)
	material.Wipe()
	if err != nil {
		return nil, err
	}
	defer raw.Wipe()
	req := &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dk.KeyID}, Plaintext: msg}
	body, _ := wire.Append(nil, req)
	resp, err := env.Sidecar.Encrypt(ctx, dk.KeyID, msg, nil)
	if err != nil {
		return nil, err
	}
	respBody, _ := wire.Append(nil, &api.EncryptResponse{Ciphertext: resp, KeyID: dk.KeyID, KeyVersion: 1})
	var failed error
	fail := func(err error) {
		if err != nil && failed == nil {
			failed = err
		}
	}
	ns := func(f func()) float64 {
		r := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				f()
			}
		})
		return float64(r.T.Nanoseconds()) / float64(max(r.N, 1))
	}
	crypto := ns(func() { _, err := raw.Encrypt(nil, msg, nil); fail(err) })
	library := ns(func() { _, err := env.Sidecar.Encrypt(ctx, dk.KeyID, msg, nil); fail(err) })
	decode := ns(func() {
		var r api.EncryptRequest
		if !wire.Decode(body, &r) {
			fail(fmt.Errorf("bench: the encrypt request did not take the fast path"))
		}
	})
	encode := ns(func() {
		_, _ = wire.Append(make([]byte, 0, len(respBody)), &api.EncryptResponse{Ciphertext: resp, KeyID: dk.KeyID, KeyVersion: 1})
	})
	clientSide := ns(func() {
		_, _ = wire.Append(make([]byte, 0, len(body)), req)
		var r api.EncryptResponse
		if !wire.Decode(respBody, &r) {
			fail(json.Unmarshal(respBody, &r))
		}
	})
	c, err := client.NewSidecarUnix(env.Socket, client.WithRetry(1, 0, 0))
	if err != nil {
		return nil, err
	}
	trip := ns(func() {
		_, err := c.Encrypt(ctx, req.KeyRef, req.Plaintext, req.AAD)
		fail(err)
	})
	if failed != nil {
		return nil, failed
	}
	engine := max(library-crypto, 0)
	transport := max(trip-library-decode-encode-clientSide, 0)
	out := []Stage{
		{"crypto", crypto, 0, fmt.Sprintf("AES-256-GCM of %d bytes and the ciphertext header (Key.Encrypt)", size)},
		{"engine", engine, 0, "key look-up, policy, lease and usage checks (the library call minus crypto)"},
		{"decode", decode, 0, "the server decodes the JSON request (base64 plaintext)"},
		{"encode", encode, 0, "the server encodes the JSON answer (base64 ciphertext)"},
		{"client", clientSide, 0, "the SDK (client/) encodes its request and decodes the answer"},
		{"transport", transport, 0, "HTTP/1.1 server and client, the Unix socket, goroutine switches (the rest)"},
	}
	for i := range out {
		out[i].Share = out[i].NsOp / trip
	}
	out = append(out, Stage{"round trip", trip, 1, "one request at a time over the socket"})
	return out, nil
}
