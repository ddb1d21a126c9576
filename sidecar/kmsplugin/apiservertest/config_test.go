package apiservertest

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"
	"sigs.k8s.io/yaml"
)

const deployDir = "../../../deploy/kubernetes/kms-plugin"

// TestEncryptionConfigLoads loads the ready-to-apply EncryptionConfiguration
// with the API server's own loader (its endpoint pointed at a test plugin)
// and stores and reads a Secret through what it builds, as kube-apiserver
// does, health check included.
func TestEncryptionConfigLoads(t *testing.T) {
	pl := startPlugin(t)
	src, err := os.ReadFile(filepath.Join(deployDir, "encryption-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const endpoint = "unix:///var/run/dcaas-kms/kms-plugin.sock"
	if !bytes.Contains(src, []byte(endpoint)) {
		t.Fatalf("encryption-config.yaml no longer names %s; update this test", endpoint)
	}
	cfgFile := filepath.Join(t.TempDir(), "encryption-config.yaml")
	if err := os.WriteFile(cfgFile, bytes.ReplaceAll(src, []byte(endpoint), []byte("unix://"+pl.path)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := encryptionconfig.LoadEncryptionConfig(t.Context(), cfgFile, false, "apiserver-1")
	if err != nil {
		t.Fatalf("LoadEncryptionConfig: %v", err)
	}
	tr := cfg.Transformers[schema.GroupResource{Resource: "secrets"}]
	if tr == nil {
		t.Fatalf("no transformer for secrets: %v", cfg.Transformers)
	}
	for _, hc := range cfg.HealthChecks {
		if err := hc.Check(httptest.NewRequest("GET", "/healthz", nil)); err != nil {
			t.Fatalf("health check %s: %v", hc.Name(), err)
		}
	}
	secret := []byte(`{"kind":"Secret","data":{"token":"c2VjcmV0"}}`)
	dataCtx := value.DefaultContext("/registry/secrets/kube-system/bootstrap")
	stored, err := tr.TransformToStorage(t.Context(), secret, dataCtx)
	if err != nil {
		t.Fatalf("TransformToStorage: %v", err)
	}
	if !bytes.HasPrefix(stored, []byte("k8s:enc:kms:v2:dcaas:")) || bytes.Contains(stored, []byte("c2VjcmV0")) {
		t.Fatalf("stored object %q: want the k8s:enc:kms:v2:dcaas: prefix and no clear text", stored[:min(40, len(stored))])
	}
	out, stale, err := tr.TransformFromStorage(t.Context(), stored, dataCtx)
	if err != nil || stale || !bytes.Equal(out, secret) {
		t.Fatalf("TransformFromStorage = %q, stale %v, %v", out, stale, err)
	}
	// identity, the second provider, still reads what was stored in clear.
	if out, _, err := tr.TransformFromStorage(t.Context(), secret, dataCtx); err != nil || !bytes.Equal(out, secret) {
		t.Fatalf("reading a Secret stored before the switch = %q, %v", out, err)
	}
}

// TestManifestsDecodeStrictly decodes the static pod and the API server
// patch strictly into Kubernetes' Pod type: a misspelt or misplaced field
// is an error.
func TestManifestsDecodeStrictly(t *testing.T) {
	for _, name := range []string{"dcaas-kms-plugin.yaml", "kube-apiserver-patch.yaml"} {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(deployDir, name))
			if err != nil {
				t.Fatal(err)
			}
			var pod corev1.Pod
			if err := yaml.UnmarshalStrict(src, &pod); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if pod.Kind != "Pod" || len(pod.Spec.Containers) == 0 {
				t.Fatalf("%s: %+v", name, pod.TypeMeta)
			}
			mounts := map[string]string{}
			for _, c := range pod.Spec.Containers {
				for _, m := range c.VolumeMounts {
					mounts[m.Name] = m.MountPath
				}
			}
			for _, v := range pod.Spec.Volumes {
				if _, ok := mounts[v.Name]; !ok {
					t.Errorf("%s: volume %s is mounted by no container", name, v.Name)
				}
			}
			if name == "dcaas-kms-plugin.yaml" {
				args := strings.Join(pod.Spec.Containers[0].Args, " ")
				for _, want := range []string{"--kms-plugin-socket=/var/run/dcaas-kms/kms-plugin.sock", "--kms-plugin-key=", "--kms-plugin-allow-uid=0"} {
					if !strings.Contains(args, want) {
						t.Errorf("the sidecar's args lack %s", want)
					}
				}
			}
		})
	}
}
