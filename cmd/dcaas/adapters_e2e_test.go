package main_test

// End-to-end test of `dcaas sidecar serve` with both adapters: the real
// binary as a child process, the Kubernetes KMS v2 client on
// --kms-plugin-socket and the OpenBao client on the sidecar's socket.

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	openbao "github.com/openbao/openbao/api/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/sidecar/kmsplugin"
)

func TestSidecarServeAdapters(t *testing.T) {
	t.Parallel()
	e2e.Binary(t) // builds, or skips in -short mode, before the KMS starts
	env, cust, token := startKMSWithToken(t, "kube-apiserver")
	var key api.DataKey
	cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &key)

	dir := t.TempDir()
	socket, pluginSocket := filepath.Join(dir, "sidecar.sock"), filepath.Join(dir, "kms-plugin.sock")
	proc := e2e.StartSidecar(t, e2e.SidecarConfig{
		KMSURL: env.URL, CAPEM: env.CAPEM, Token: token,
		DataDir: filepath.Join(dir, "sc"), PollInterval: 100 * time.Millisecond,
		Flags: []string{"--socket", socket, "--kms-plugin-socket", pluginSocket, "--kms-plugin-key", key.KeyID},
	})
	if line := proc.ReadyLine(); !strings.Contains(line, "kms-plugin-socket="+pluginSocket) {
		t.Fatalf("ready line %q does not name the plugin socket", line)
	}

	kc := kmsClient(t, pluginSocket)
	if st, err := kc.Status(t.Context(), &kmsapi.StatusRequest{}); err != nil || st.Healthz == "ok" {
		t.Fatalf("Status before the key is loaded = %+v, %v; want unhealthy", st, err)
	}
	// Load the key over the socket, name it for transit.
	local := devenv.UnixClient(socket)
	var cert api.WrappingCertificate
	if err := local.Do(t.Context(), "GET", "/v1/wrapping-certificate", nil, &cert); err != nil {
		t.Fatal(err)
	}
	var wrapped api.WrappedKeys
	cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{key.EKB}, WrappingCertPEM: cert.CertPEM}, &wrapped)
	for _, call := range []struct {
		method, path string
		in           any
	}{
		{"POST", "/v1/keys/import", &wrapped},
		{"PUT", "/v1/keys/" + key.KeyID + "/name", api.SetKeyNameRequest{Name: "secrets"}},
	} {
		if err := local.Do(t.Context(), call.method, call.path, call.in, nil); err != nil {
			t.Fatalf("%s %s: %v", call.method, call.path, err)
		}
	}

	st, err := kc.Status(t.Context(), &kmsapi.StatusRequest{})
	if err != nil || st.Healthz != "ok" || st.KeyId != kmsplugin.KeyID(key.KeyID, 1) {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	enc, err := kc.Encrypt(t.Context(), &kmsapi.EncryptRequest{Uid: "1", Plaintext: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := kc.Decrypt(t.Context(), &kmsapi.DecryptRequest{Uid: "2", Ciphertext: enc.Ciphertext, KeyId: enc.KeyId}); err != nil || string(dec.Plaintext) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("Decrypt = %v", err)
	}

	cfg := openbao.DefaultConfig()
	cfg.MaxRetries = 0
	cfg.Address = "unix://" + socket
	bao, err := openbao.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bao.Logical().Write("transit/encrypt/secrets", map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte("hi"))})
	if err != nil || !strings.HasPrefix(s.Data["ciphertext"].(string), "vault:v1:") {
		t.Fatalf("transit encrypt through the process = %v, %v", s, err)
	}

	// The KMS goes away; both adapters keep serving.
	env.Stop()
	if _, err := kc.Encrypt(t.Context(), &kmsapi.EncryptRequest{Uid: "3", Plaintext: []byte("seed")}); err != nil {
		t.Fatalf("plugin Encrypt with the KMS down: %v", err)
	}
	if _, err := bao.Logical().Write("transit/decrypt/secrets", map[string]any{"ciphertext": s.Data["ciphertext"]}); err != nil {
		t.Fatalf("transit decrypt with the KMS down: %v", err)
	}

	proc.Stop(t) // SIGTERM
	for _, p := range []string{socket, pluginSocket} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind after shutdown: %v", p, err)
		}
	}
}

func kmsClient(t *testing.T, path string) kmsapi.KeyManagementServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kmsapi.NewKeyManagementServiceClient(conn)
}
