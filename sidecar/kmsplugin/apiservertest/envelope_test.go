package apiservertest

import (
	"bytes"
	"testing"
	"time"

	kmsservice "k8s.io/kms/pkg/service"

	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
	"github.com/dcaas/dcaas/sidecar/kmsplugin"
)

const provider = "dcaas"

// apiServer is the part of a Kubernetes API server that encrypts Secrets:
// its KMS v2 gRPC client and the state its key-id watch keeps (a DEK seed
// encrypted by the plugin, renewed when the plugin's key id changes).
type apiServer struct {
	svc   kmsservice.Service
	state kmsv2.State
}

// newState is what the API server does at start and when Status reports a
// new key id: a fresh DEK seed, encrypted by the plugin.
func (a *apiServer) newState(t *testing.T) {
	t.Helper()
	uid := "uid-" + time.Now().Format(time.RFC3339Nano)
	tr, obj, cacheKey, err := kmsv2.GenerateTransformer(t.Context(), uid, a.svc, true)
	if err != nil {
		t.Fatalf("GenerateTransformer: %v", err)
	}
	a.state = kmsv2.State{
		Transformer: tr, EncryptedObjectKeyID: obj.KeyID, EncryptedObjectEncryptedDEKSource: obj.EncryptedDEKSource,
		EncryptedObjectAnnotations: obj.Annotations, EncryptedObjectEncryptedDEKSourceType: obj.EncryptedDEKSourceType,
		UID: uid, ExpirationTimestamp: time.Now().Add(time.Hour), CacheKey: cacheKey, KMSProviderName: provider,
	}
}

// transformer is one API server process's envelope transformer (each has
// its own DEK cache, so a new one must ask the plugin to decrypt).
func (a *apiServer) transformer(id string) value.Transformer {
	return kmsv2.NewEnvelopeTransformer(a.svc, provider, func() (kmsv2.State, error) { return a.state, nil }, id)
}

// plugin is a KMS, a custodian "kube-apiserver", its sidecar with one
// aes-256-gcm key loaded, and the KMS v2 plugin serving that key on path.
type plugin struct {
	env  *kmstest.Env
	cust *kmstest.Client
	sc   *sidecar.Sidecar
	key  api.DataKey
	path string
}

func startPlugin(t *testing.T) *plugin {
	t.Helper()
	pw := e2e.StartPluginWorld(t)
	return &plugin{env: pw.Env, cust: pw.Cust, sc: pw.Sidecar, key: pw.Key,
		path: e2e.ServePlugin(t, pw.Sidecar, kmsplugin.Config{KeyID: pw.Key.KeyID})}
}

func TestAPIServerEnvelopeThroughPlugin(t *testing.T) {
	ctx := t.Context()
	pl := startPlugin(t)
	key, env, path := pl.key, pl.env, pl.path
	svc, err := kmsv2.NewGRPCService(ctx, "unix://"+path, provider, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := svc.Status(ctx)
	if err != nil || st.Healthz != "ok" || st.KeyID != kmsplugin.KeyID(key.KeyID, 1) {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if _, err := kmsv2.ValidateKeyID(st.KeyID); err != nil {
		t.Fatalf("the API server refuses key id %q: %v", st.KeyID, err)
	}
	a := &apiServer{svc: svc}
	a.newState(t)

	secret := []byte(`{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}`)
	dataCtx := value.DefaultContext("/registry/secrets/default/db")
	stored1, err := a.transformer("apiserver-1").TransformToStorage(ctx, secret, dataCtx)
	if err != nil {
		t.Fatalf("TransformToStorage: %v", err)
	}
	if bytes.Contains(stored1, []byte("aHVudGVyMg")) {
		t.Fatal("the stored object holds the secret in clear")
	}
	read := func(who string, stored []byte, wantStale bool) {
		t.Helper()
		out, stale, err := a.transformer(who).TransformFromStorage(ctx, stored, dataCtx)
		if err != nil || !bytes.Equal(out, secret) || stale != wantStale {
			t.Fatalf("%s TransformFromStorage = %q, stale %v, %v; want the secret, stale %v", who, out, stale, err, wantStale)
		}
	}
	read("apiserver-2", stored1, false) // a cold cache: the plugin decrypts the DEK seed

	// Rotation: version 2 is loaded, the plugin's key id moves, the API
	// server makes a new DEK seed; objects written before read as stale
	// (to be rewritten by a storage migration) and still decrypt.
	var v2 api.DataKey
	pl.cust.MustDo(t, "POST", "/v1/datakeys/"+key.KeyID+"/versions", api.NewVersionRequest{EKB: key.EKB}, &v2)
	e2e.LoadKeys(t, pl.cust, pl.sc, v2.EKB)
	if st, err := svc.Status(ctx); err != nil || st.KeyID != kmsplugin.KeyID(key.KeyID, 2) {
		t.Fatalf("Status after rotation = %+v, %v", st, err)
	}
	a.newState(t)
	if a.state.EncryptedObjectKeyID != kmsplugin.KeyID(key.KeyID, 2) {
		t.Fatalf("new DEK seed under key id %q", a.state.EncryptedObjectKeyID)
	}
	read("apiserver-3", stored1, true)
	stored2, err := a.transformer("apiserver-3").TransformToStorage(ctx, secret, dataCtx)
	if err != nil {
		t.Fatal(err)
	}
	read("apiserver-4", stored2, false)

	// The KMS goes away: API servers with cold caches still read and write.
	env.Stop()
	read("apiserver-5", stored1, true)
	read("apiserver-6", stored2, false)
	if _, err := a.transformer("apiserver-6").TransformToStorage(ctx, secret, dataCtx); err != nil {
		t.Fatalf("TransformToStorage with the KMS down: %v", err)
	}
	a.newState(t) // a restart with the KMS down gets a DEK seed too
}
