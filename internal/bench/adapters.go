package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/transit"
	"github.com/dcaas/dcaas/sidecar/kmsplugin"
)

// Adapter mode names: the same sidecar through the protocols of other
// clients.
const (
	// ModeTransit is the Vault/OpenBao transit API on the sidecar's Unix
	// socket, one operation per request.
	ModeTransit = "transit"
	// ModeKMSPlugin is the Kubernetes KMS v2 plugin (gRPC on its own Unix
	// socket), encrypt or decrypt only. Its plaintexts are at most
	// kmsplugin.MaxPlaintext bytes (the API server sends 32-byte DEK
	// seeds), so larger --size values are cut to that.
	ModeKMSPlugin = "grpc-kms-plugin"
)

// transitName is the sidecar-local name the transit mode uses.
const transitName = "bench"

// transitMode calls /v1/transit/{op}/bench with the run's operation.
func transitMode(ctx context.Context, env *devenv.Env, op, keyID string, msg []byte) (mode, error) {
	for _, n := range env.Sidecar.KeyNames() { // a previous run's key
		if n.Name == transitName {
			env.Sidecar.RemoveKeyName(n.KeyID)
		}
	}
	if err := env.Sidecar.SetKeyName(keyID, transitName); err != nil {
		return mode{}, err
	}
	var path string
	body := map[string]string{}
	switch op {
	case "encrypt":
		path, body["plaintext"] = "encrypt", base64.StdEncoding.EncodeToString(msg)
	case "decrypt":
		ct, err := env.Sidecar.Encrypt(ctx, keyID, msg, nil)
		if err != nil {
			return mode{}, err
		}
		path, body["ciphertext"] = "decrypt", transit.FormatValue(1, ct)
	case "mac":
		path, body["input"] = "hmac", base64.StdEncoding.EncodeToString(msg)
	case "sign":
		path, body["input"] = "sign", base64.StdEncoding.EncodeToString(msg)
	}
	req, err := json.Marshal(body)
	if err != nil {
		return mode{}, err
	}
	url := "http://sidecar/v1/transit/" + path + "/" + transitName
	return mode{name: ModeTransit, newCall: func() call {
		c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", env.Socket)
			},
		}}
		return func(ctx context.Context) (int, error) {
			r, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(req))
			if err != nil {
				return 0, err
			}
			resp, err := c.Do(r)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return 0, err
			}
			if resp.StatusCode != http.StatusOK {
				return 0, fmt.Errorf("transit %s: %d %s", path, resp.StatusCode, b)
			}
			return 1, nil
		}
	}}, nil
}

// kmsPluginMode serves the key as a KMS v2 plugin and calls it with
// Kubernetes' generated gRPC client, one connection per worker. It
// returns false for operations the plugin does not have.
func kmsPluginMode(ctx context.Context, env *devenv.Env, op string, dk api.DataKey, size int) (mode, func(), bool, error) {
	if op != "encrypt" && op != "decrypt" {
		return mode{}, nil, false, nil
	}
	p, err := kmsplugin.New(env.Sidecar, kmsplugin.Config{KeyID: dk.KeyID})
	if err != nil {
		return mode{}, nil, false, err
	}
	path := filepath.Join(env.DataDir, "kms-plugin.sock")
	ln, err := kmsplugin.Listen(path)
	if err != nil {
		return mode{}, nil, false, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Serve(sctx, ln) }()
	var (
		mu    sync.Mutex
		conns []*grpc.ClientConn
	)
	stop := func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		cancel()
		<-done
	}
	seed := make([]byte, min(size, kmsplugin.MaxPlaintext))
	var ct *kmsapi.EncryptResponse
	if op == "decrypt" {
		r, err := p.Encrypt(ctx, "bench", seed)
		if err != nil {
			stop()
			return mode{}, nil, false, err
		}
		ct = &kmsapi.EncryptResponse{Ciphertext: r.Ciphertext, KeyId: r.KeyID}
	}
	return mode{name: ModeKMSPlugin, newCall: func() call {
		conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return func(context.Context) (int, error) { return 0, err }
		}
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		c := kmsapi.NewKeyManagementServiceClient(conn)
		if op == "decrypt" {
			req := &kmsapi.DecryptRequest{Uid: "bench", Ciphertext: ct.Ciphertext, KeyId: ct.KeyId}
			return func(ctx context.Context) (int, error) {
				_, err := c.Decrypt(ctx, req)
				return 1, err
			}
		}
		req := &kmsapi.EncryptRequest{Uid: "bench", Plaintext: seed}
		return func(ctx context.Context) (int, error) {
			_, err := c.Encrypt(ctx, req)
			return 1, err
		}
	}}, stop, true, nil
}
