package kmsplugin_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
	"github.com/dcaas/dcaas/sidecar/kmsplugin"
)

// world is a KMS, a custodian, and a sidecar enrolled for it with one
// AES-256-GCM key loaded.
type world struct {
	env  *kmstest.Env
	cust *kmstest.Client
	sc   *sidecar.Sidecar
	key  api.DataKey
}

func newWorld(t *testing.T) *world {
	t.Helper()
	pw := e2e.StartPluginWorld(t)
	return &world{env: pw.Env, cust: pw.Cust, sc: pw.Sidecar, key: pw.Key}
}

// serve starts a plugin for cfg on a fresh socket and returns Kubernetes'
// generated KMS v2 client connected to it.
func serve(t *testing.T, sc kmsplugin.Sidecar, cfg kmsplugin.Config) kmsapi.KeyManagementServiceClient {
	t.Helper()
	path := e2e.ServePlugin(t, sc, cfg)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("plugin socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// The API server dials "unix://" endpoints the same way.
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kmsapi.NewKeyManagementServiceClient(conn)
}

func wantCode(t *testing.T, err error, want codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != want || !strings.Contains(st.Message(), msg) {
		t.Fatalf("error = %v, want gRPC %s containing %q", err, want, msg)
	}
}

func TestPluginWithKubernetesClient(t *testing.T) {
	w := newWorld(t)
	c := serve(t, w.sc, kmsplugin.Config{KeyID: w.key.KeyID})
	ctx := t.Context()
	v1 := kmsplugin.KeyID(w.key.KeyID, 1)

	st, err := c.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil || st.Healthz != "ok" || st.Version != "v2" || st.KeyId != v1 {
		t.Fatalf("Status = %+v, %v; want ok, v2, %s", st, err, v1)
	}
	seed := bytes.Repeat([]byte{0x5e}, 32)
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "u1", Plaintext: seed})
	if err != nil || enc.KeyId != v1 || len(enc.Ciphertext) > 1024 || len(enc.Annotations) != 0 {
		t.Fatalf("Encrypt = %+v, %v", enc, err)
	}
	dec, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u2", Ciphertext: enc.Ciphertext, KeyId: enc.KeyId})
	if err != nil || !bytes.Equal(dec.Plaintext, seed) {
		t.Fatalf("Decrypt = %x, %v", dec.GetPlaintext(), err)
	}

	// Rotation: load version 2; the key id moves, v1 ciphertexts still open.
	var v2key api.DataKey
	w.cust.MustDo(t, "POST", "/v1/datakeys/"+w.key.KeyID+"/versions", api.NewVersionRequest{EKB: w.key.EKB}, &v2key)
	e2e.LoadKeys(t, w.cust, w.sc, v2key.EKB)
	v2 := kmsplugin.KeyID(w.key.KeyID, 2)
	if st, err := c.Status(ctx, &kmsapi.StatusRequest{}); err != nil || st.KeyId != v2 || st.Healthz != "ok" {
		t.Fatalf("Status after rotation = %+v, %v; want key id %s", st, err, v2)
	}
	enc2, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "u3", Plaintext: seed})
	if err != nil || enc2.KeyId != v2 {
		t.Fatalf("Encrypt after rotation = %+v, %v", enc2, err)
	}
	for _, e := range []*kmsapi.EncryptResponse{enc, enc2} {
		if dec, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u4", Ciphertext: e.Ciphertext, KeyId: e.KeyId}); err != nil || !bytes.Equal(dec.Plaintext, seed) {
			t.Fatalf("Decrypt(%s) after rotation = %v", e.KeyId, err)
		}
	}

	// The KMS goes away: the plugin stays healthy and serves.
	w.env.Stop()
	if st, err := c.Status(ctx, &kmsapi.StatusRequest{}); err != nil || st.Healthz != "ok" || st.KeyId != v2 {
		t.Fatalf("Status with the KMS down = %+v, %v", st, err)
	}
	enc3, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "u5", Plaintext: seed})
	if err != nil {
		t.Fatalf("Encrypt with the KMS down: %v", err)
	}
	if _, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u6", Ciphertext: enc3.Ciphertext, KeyId: enc3.KeyId}); err != nil {
		t.Fatalf("Decrypt with the KMS down: %v", err)
	}
}

func TestPluginRefusals(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	c := serve(t, w.sc, kmsplugin.Config{KeyID: w.key.KeyID})
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "u", Plaintext: []byte("seed")})
	if err != nil {
		t.Fatal(err)
	}
	// A ciphertext of the same key made through the native API (another
	// purpose) does not decrypt through the plugin.
	native, err := w.sc.Encrypt(ctx, w.key.KeyID, []byte("seed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(enc.Ciphertext)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"oversized plaintext", func() error {
			_, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "u", Plaintext: make([]byte, kmsplugin.MaxPlaintext+1)})
			return err
		}, codes.ResourceExhausted, "at most 512"},
		{"oversized message", func() error {
			_, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u", Ciphertext: make([]byte, 100<<10)})
			return err
		}, codes.ResourceExhausted, ""},
		{"malformed ciphertext", func() error {
			_, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u", Ciphertext: []byte("not a ciphertext")})
			return err
		}, codes.InvalidArgument, "not a dcaas ciphertext"},
		{"tampered ciphertext", func() error {
			_, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u", Ciphertext: tampered, KeyId: enc.KeyId})
			return err
		}, codes.InvalidArgument, "does not decrypt"},
		{"another purpose's ciphertext", func() error {
			_, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u", Ciphertext: native, KeyId: enc.KeyId})
			return err
		}, codes.InvalidArgument, "does not decrypt"},
		{"key id that disagrees", func() error {
			_, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u", Ciphertext: enc.Ciphertext, KeyId: kmsplugin.KeyID(w.key.KeyID, 9)})
			return err
		}, codes.InvalidArgument, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code, tc.msg) })
	}

	t.Run("unknown key", func(t *testing.T) {
		c := serve(t, w.sc, kmsplugin.Config{KeyID: "key_not_loaded"})
		st, err := c.Status(ctx, &kmsapi.StatusRequest{})
		if err != nil || st.Healthz == "ok" || !strings.Contains(st.Healthz, "not loaded") {
			t.Fatalf("Status = %+v, %v; want unhealthy: not loaded", st, err)
		}
		_, err = c.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "u", Plaintext: []byte("seed")})
		wantCode(t, err, codes.NotFound, "not loaded")
		_, err = c.Decrypt(ctx, &kmsapi.DecryptRequest{Uid: "u", Ciphertext: enc.Ciphertext, KeyId: enc.KeyId})
		wantCode(t, err, codes.InvalidArgument, "this plugin serves key_not_loaded")
	})

	t.Run("wrong peer", func(t *testing.T) {
		c := serve(t, w.sc, kmsplugin.Config{KeyID: w.key.KeyID, AllowUIDs: []int{os.Getuid() + 4242}})
		_, err := c.Status(ctx, &kmsapi.StatusRequest{})
		wantCode(t, err, codes.PermissionDenied, "may not use this KMS plugin")
		_, err = c.Encrypt(ctx, &kmsapi.EncryptRequest{Uid: "u", Plaintext: []byte("seed")})
		wantCode(t, err, codes.PermissionDenied, "may not use this KMS plugin")
	})

	t.Run("lease run out", func(t *testing.T) {
		later := func() time.Time { return time.Now().Add(48 * time.Hour) }
		c := serve(t, w.sc, kmsplugin.Config{KeyID: w.key.KeyID, Now: later})
		st, err := c.Status(ctx, &kmsapi.StatusRequest{})
		if err != nil || st.Healthz == "ok" || !strings.Contains(st.Healthz, "lease") {
			t.Fatalf("Status past the lease = %+v, %v", st, err)
		}
	})
}

func TestNewRefuses(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		name string
		sc   kmsplugin.Sidecar
		cfg  kmsplugin.Config
	}{
		{"no key", w.sc, kmsplugin.Config{}},
		{"no sidecar", nil, kmsplugin.Config{KeyID: w.key.KeyID}},
		{"bad uid", w.sc, kmsplugin.Config{KeyID: w.key.KeyID, AllowUIDs: []int{-1}}},
	} {
		if _, err := kmsplugin.New(tc.sc, tc.cfg); err == nil {
			t.Errorf("New(%s) = nil error", tc.name)
		}
	}
	// A listener that is not a Unix socket: the caller is unknown.
	p, err := kmsplugin.New(w.sc, kmsplugin.Config{KeyID: w.key.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = kmsapi.NewKeyManagementServiceClient(conn).Status(t.Context(), &kmsapi.StatusRequest{})
	wantCode(t, err, codes.Unauthenticated, "could not be established")
}
