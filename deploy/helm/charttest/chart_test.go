package charttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	v2util "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../dcaas"
	repoRoot  = "../../.."
	namespace = "dcaas"
	release   = "prod"
	// The Kubernetes version the chart is rendered for.
	kubeVersion = "v1.34.0"
)

// object is one rendered manifest, decoded strictly into its API type.
type object struct {
	source string // the template it came from
	kind   string
	name   string
	obj    any // *appsv1.Deployment, *corev1.Service, ...
}

// rendered is everything one value set made.
type rendered struct {
	objects []object
	notes   string
}

func (r rendered) kinds() []string {
	var ks []string
	for _, o := range r.objects {
		ks = append(ks, o.kind+"/"+o.name)
	}
	sort.Strings(ks)
	return ks
}

func all[T any](r rendered) []T {
	var out []T
	for _, o := range r.objects {
		if t, ok := o.obj.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// newKinds maps apiVersion/kind to a new typed object. A kind the chart
// makes that is not here fails the test: every object is checked against
// its schema.
var newKinds = map[string]func() any{
	"apps/v1/Deployment":                      func() any { return new(appsv1.Deployment) },
	"v1/Service":                              func() any { return new(corev1.Service) },
	"v1/Secret":                               func() any { return new(corev1.Secret) },
	"policy/v1/PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return new(networkingv1.NetworkPolicy) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(monitoringv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return new(monitoringv1.PodMonitor) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(monitoringv1.PrometheusRule) },
}

// strictDecode decodes YAML into v, refusing duplicate keys and any field
// v's type does not have (a misspelt or misplaced field in a template).
func strictDecode(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one document")
	}
	return nil
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	if err := ch.Validate(); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	if !v2util.IsCompatibleRange(ch.Metadata.KubeVersion, kubeVersion) {
		t.Fatalf("the chart's kubeVersion %q excludes %s, the version it is tested for", ch.Metadata.KubeVersion, kubeVersion)
	}
	return ch
}

// render renders the chart with vals (merged over values.yaml) for a
// cluster that serves the Prometheus operator's API when monitoringAPI.
func render(t *testing.T, ch *chart.Chart, vals map[string]any, monitoringAPI bool) (rendered, error) {
	t.Helper()
	caps := common.DefaultCapabilities.Copy()
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *kv
	caps.APIVersions = slices.Clone(caps.APIVersions)
	if monitoringAPI {
		caps.APIVersions = append(caps.APIVersions, "monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor")
	}
	top, err := chartutil.ToRenderValues(ch, vals, common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, caps)
	if err != nil {
		return rendered{}, err
	}
	eng := engine.Engine{Strict: true}
	files, err := eng.RenderWithContext(context.Background(), ch, top)
	if err != nil {
		return rendered{}, err
	}
	var r rendered
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		content := files[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			r.notes = content
			continue
		}
		if strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		docs := releaseutil.SplitManifests(content)
		keys := make([]string, 0, len(docs))
		for k := range docs {
			keys = append(keys, k)
		}
		sort.Sort(releaseutil.BySplitManifestsOrder(keys))
		for _, k := range keys {
			doc := docs[k]
			var head struct {
				APIVersion string            `json:"apiVersion"`
				Kind       string            `json:"kind"`
				Metadata   metav1.ObjectMeta `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", name, err, doc)
			}
			if head.Kind == "" {
				// Only comments: a template whose object is off.
				var anything any
				if err := yaml.Unmarshal([]byte(doc), &anything); err != nil || anything != nil {
					t.Fatalf("%s: a document without kind:\n%s", name, doc)
				}
				continue
			}
			mk, ok := newKinds[head.APIVersion+"/"+head.Kind]
			if !ok {
				t.Fatalf("%s: %s %s: no schema to check it against (add its type to newKinds)", name, head.APIVersion, head.Kind)
			}
			obj := mk()
			if err := strictDecode([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s %s does not match its schema: %v\n%s", name, head.Kind, head.Metadata.Name, err, doc)
			}
			r.objects = append(r.objects, object{source: name, kind: head.Kind, name: head.Metadata.Name, obj: obj})
		}
	}
	return r, nil
}

// baseValues are what every install needs: the DSN's Secret.
func baseValues() map[string]any {
	return map[string]any{"postgres": map[string]any{"existingSecret": "dcaas-postgres"}}
}

// merge returns a copy of a with b's keys set, recursively.
func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = merge(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func TestChartRendersValidObjects(t *testing.T) {
	ch := loadChart(t)
	help := dcaasHelp(t)

	kmsName := "prod-dcaas-kms"
	cases := []struct {
		name          string
		values        map[string]any
		monitoringAPI bool
		want          []string // kind/name of every object
		check         func(t *testing.T, r rendered)
	}{
		{
			name:   "defaults",
			values: baseValues(),
			want: []string{"Deployment/" + kmsName, "NetworkPolicy/" + kmsName, "PodDisruptionBudget/" + kmsName,
				"Service/" + kmsName},
			check: func(t *testing.T, r rendered) {
				d := kmsDeployment(t, r)
				if got := *d.Spec.Replicas; got != 2 {
					t.Errorf("replicas %d, want 2", got)
				}
				args := d.Spec.Template.Spec.Containers[0].Args
				for _, want := range []string{"--store=postgres", "--seal=file", "--seal-passphrase-file=/etc/dcaas/seal/passphrase",
					"--tls-host=" + kmsName + "." + namespace + ".svc"} {
					if !slices.Contains(args, want) {
						t.Errorf("KMS args lack %s: %q", want, args)
					}
				}
				if env := envNamed(d.Spec.Template.Spec.Containers[0], "DCAAS_POSTGRES_DSN"); env == nil ||
					env.ValueFrom == nil || env.ValueFrom.SecretKeyRef == nil || env.ValueFrom.SecretKeyRef.Name != "dcaas-postgres" {
					t.Errorf("DCAAS_POSTGRES_DSN does not come from Secret dcaas-postgres: %+v", env)
				}
				inits := d.Spec.Template.Spec.InitContainers
				if len(inits) != 1 || inits[0].Name != "root-key" || !strings.Contains(inits[0].Image, "@sha256:") {
					t.Fatalf("want one root-key init container with an image pinned by digest, got %+v", inits)
				}
				script := strings.Join(inits[0].Command, " ")
				if !strings.Contains(script, "chmod 0600 /var/lib/dcaas/kms/root.key.tmp") ||
					!strings.Contains(script, "mv /var/lib/dcaas/kms/root.key.tmp /var/lib/dcaas/kms/root.key") {
					t.Errorf("the init container does not install root.key with mode 0600 in the data dir: %s", script)
				}
				aff := d.Spec.Template.Spec.Affinity
				if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
					len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
					t.Errorf("want preferred pod anti-affinity only: %+v", aff)
				}
				if !strings.Contains(r.notes, kmsName) {
					t.Errorf("NOTES.txt does not name the Deployment:\n%s", r.notes)
				}
			},
		},
		{
			name: "DSN from values",
			values: map[string]any{"postgres": map[string]any{"dsn": "postgres://dcaas:pw@pg:5432/dcaas?sslmode=verify-full"},
				"kms": map[string]any{"replicas": 3, "antiAffinity": "required"}},
			want: []string{"Deployment/" + kmsName, "NetworkPolicy/" + kmsName, "PodDisruptionBudget/" + kmsName,
				"Secret/" + kmsName + "-postgres", "Service/" + kmsName},
			check: func(t *testing.T, r rendered) {
				d := kmsDeployment(t, r)
				if got := *d.Spec.Replicas; got != 3 {
					t.Errorf("replicas %d, want 3", got)
				}
				s := all[*corev1.Secret](r)[0]
				ref := envNamed(d.Spec.Template.Spec.Containers[0], "DCAAS_POSTGRES_DSN").ValueFrom.SecretKeyRef
				if ref.Name != s.Name || s.StringData[ref.Key] != "postgres://dcaas:pw@pg:5432/dcaas?sslmode=verify-full" {
					t.Errorf("the DSN env refers to %s/%s; the chart's Secret is %s with keys %v", ref.Name, ref.Key, s.Name, s.StringData)
				}
				aff := d.Spec.Template.Spec.Affinity.PodAntiAffinity
				if len(aff.RequiredDuringSchedulingIgnoredDuringExecution) != 1 || len(aff.PreferredDuringSchedulingIgnoredDuringExecution) != 0 {
					t.Errorf("want required pod anti-affinity only: %+v", aff)
				}
			},
		},
		{
			name:   "passphrase in its own Secret",
			values: merge(baseValues(), map[string]any{"seal": map[string]any{"file": map[string]any{"passphraseSecret": "dcaas-kms-passphrase"}}}),
			want: []string{"Deployment/" + kmsName, "NetworkPolicy/" + kmsName, "PodDisruptionBudget/" + kmsName,
				"Service/" + kmsName},
			check: func(t *testing.T, r rendered) {
				d := kmsDeployment(t, r)
				var sources []corev1.VolumeProjection
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Name == "seal" && v.Projected != nil {
						sources = v.Projected.Sources
					}
				}
				if len(sources) != 2 || sources[0].Secret == nil || sources[0].Secret.Name != "dcaas-kms-seal" ||
					sources[1].Secret == nil || sources[1].Secret.Name != "dcaas-kms-passphrase" ||
					len(sources[1].Secret.Items) != 1 || sources[1].Secret.Items[0].Path != "passphrase" {
					t.Errorf("want the seal volume projected from dcaas-kms-seal and the passphrase from dcaas-kms-passphrase: %+v", sources)
				}
				if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--seal-passphrase-file=/etc/dcaas/seal/passphrase") {
					t.Errorf("the KMS does not read the passphrase from the seal volume")
				}
			},
		},
		{
			name: "pkcs11",
			values: merge(baseValues(), map[string]any{"seal": map[string]any{"type": "pkcs11"},
				"pkcs11Image": map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)}}),
			want: []string{"Deployment/" + kmsName, "NetworkPolicy/" + kmsName, "PodDisruptionBudget/" + kmsName,
				"Service/" + kmsName},
			check: func(t *testing.T, r rendered) {
				d := kmsDeployment(t, r)
				c := d.Spec.Template.Spec.Containers[0]
				if c.Image != "registry.example.com/dcaas@sha256:"+strings.Repeat("ab", 32) {
					t.Errorf("pkcs11 runs image %s, want the cgo image pinned by its digest", c.Image)
				}
				if len(d.Spec.Template.Spec.InitContainers) != 0 {
					t.Errorf("the HSM seal needs no root.key, but there are init containers")
				}
				for _, want := range []string{"--seal=pkcs11", "--pkcs11-module=/usr/lib/softhsm/libsofthsm2.so", "--pkcs11-token=dcaas",
					"--pkcs11-pin-file=/etc/dcaas/pkcs11/pin"} {
					if !slices.Contains(c.Args, want) {
						t.Errorf("KMS args lack %s: %q", want, c.Args)
					}
				}
				for _, a := range c.Args {
					if strings.HasPrefix(a, "--seal-passphrase-file") {
						t.Errorf("pkcs11 passes %s", a)
					}
				}
			},
		},
		{
			name:          "monitoring auto, operator present",
			values:        merge(baseValues(), map[string]any{"exampleApp": map[string]any{"enabled": true}}),
			monitoringAPI: true,
			want: []string{"Deployment/" + kmsName, "Deployment/payments-api", "NetworkPolicy/" + kmsName, "PodDisruptionBudget/" + kmsName,
				"PodMonitor/payments-api-sidecar", "PrometheusRule/" + kmsName, "Service/" + kmsName, "ServiceMonitor/" + kmsName},
			check: checkAlertsMatchDeployPrometheus,
		},
		{
			name:   "monitoring auto, no operator",
			values: baseValues(),
			want: []string{"Deployment/" + kmsName, "NetworkPolicy/" + kmsName, "PodDisruptionBudget/" + kmsName,
				"Service/" + kmsName},
			check: func(t *testing.T, r rendered) {
				if !strings.Contains(r.notes, "No ServiceMonitor") {
					t.Errorf("NOTES.txt does not say there is no ServiceMonitor:\n%s", r.notes)
				}
			},
		},
		{
			name: "monitoring forced on, networkPolicy and PDB off",
			values: merge(baseValues(), map[string]any{
				"monitoring":          map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}},
				"networkPolicy":       map[string]any{"enabled": false},
				"podDisruptionBudget": map[string]any{"enabled": false}}),
			want: []string{"Deployment/" + kmsName, "PrometheusRule/" + kmsName, "Service/" + kmsName, "ServiceMonitor/" + kmsName},
		},
		{
			name: "monitoring forced off, operator present",
			values: merge(baseValues(), map[string]any{
				"monitoring": map[string]any{"serviceMonitor": map[string]any{"enabled": false}, "prometheusRule": map[string]any{"enabled": false}}}),
			monitoringAPI: true,
			want: []string{"Deployment/" + kmsName, "NetworkPolicy/" + kmsName, "PodDisruptionBudget/" + kmsName,
				"Service/" + kmsName},
		},
		{
			name: "example app, no passphrase, extra flags",
			values: merge(baseValues(), map[string]any{
				"exampleApp": map[string]any{"enabled": true},
				"seal":       map[string]any{"file": map[string]any{"passphraseKey": ""}},
				"kms":        map[string]any{"extraArgs": []any{"--server-cert-ttl=720h"}, "extraTLSHosts": []any{"kms.example.internal"}}}),
			want: []string{"Deployment/" + kmsName, "Deployment/payments-api", "NetworkPolicy/" + kmsName, "PodDisruptionBudget/" + kmsName,
				"Service/" + kmsName},
			check: func(t *testing.T, r rendered) {
				app := deploymentNamed(t, r, "payments-api")
				sidecar := containerNamed(t, app.Spec.Template.Spec, "dcaas-sidecar")
				want := "--kms=https://" + kmsName + "." + namespace + ".svc:8443"
				if !slices.Contains(sidecar.Args, want) {
					t.Errorf("the sidecar does not call the KMS's Service (%s): %q", want, sidecar.Args)
				}
				if !slices.Contains(containerNamed(t, app.Spec.Template.Spec, "dcaas-enroll").Args, want) {
					t.Errorf("the agent does not call the KMS's Service (%s)", want)
				}
				if !slices.Contains(sidecar.Args, fmt.Sprintf("--allow-uid=%d", *app.Spec.Template.Spec.SecurityContext.RunAsUser)) {
					t.Errorf("the sidecar's --allow-uid is not the pod's uid: %q", sidecar.Args)
				}
				for _, a := range kmsDeployment(t, r).Spec.Template.Spec.Containers[0].Args {
					if strings.HasPrefix(a, "--seal-passphrase-file") {
						t.Errorf("passphraseKey is empty but the KMS gets %s", a)
					}
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := render(t, ch, tc.values, tc.monitoringAPI)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			want := slices.Sorted(slices.Values(tc.want))
			if got := r.kinds(); !slices.Equal(got, want) {
				t.Fatalf("objects:\n got %q\nwant %q", got, want)
			}
			checkObjects(t, r, help)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestChartRefusesBadValues: values the chart cannot honour fail the
// install with a sentence saying what to set, instead of rendering a KMS
// that cannot start.
func TestChartRefusesBadValues(t *testing.T) {
	ch := loadChart(t)
	cases := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"no DSN", map[string]any{}, "postgres.existingSecret"},
		{"unknown seal", merge(baseValues(), map[string]any{"seal": map[string]any{"type": "vault"}}), "seal.type must be file or pkcs11"},
		{"unknown anti-affinity", merge(baseValues(), map[string]any{"kms": map[string]any{"antiAffinity": "sometimes"}}), "kms.antiAffinity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, ch, tc.values, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func kmsDeployment(t *testing.T, r rendered) *appsv1.Deployment {
	t.Helper()
	return deploymentNamed(t, r, "prod-dcaas-kms")
}

func deploymentNamed(t *testing.T, r rendered, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range all[*appsv1.Deployment](r) {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func containerNamed(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func envNamed(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// checkObjects checks what the API server would refuse or what would leave
// the objects unconnected: names and labels, selectors that select what
// they should, ports and probes that point to real ports, mounts of
// declared volumes, the security settings, and dcaas flags that exist.
func checkObjects(t *testing.T, r rendered, help map[string]helpText) {
	t.Helper()
	deployments := all[*appsv1.Deployment](r)
	for _, o := range r.objects {
		meta := metaOf(o.obj)
		if errs := validation.IsDNS1123Subdomain(meta.Name); len(errs) > 0 {
			t.Errorf("%s %s: name: %v", o.kind, meta.Name, errs)
		}
		if meta.Namespace != namespace {
			t.Errorf("%s %s: namespace %q, want the release's %q", o.kind, meta.Name, meta.Namespace, namespace)
		}
		checkLabels(t, o.kind+" "+meta.Name, meta.Labels)
	}
	for _, s := range all[*corev1.Service](r) {
		if errs := validation.IsDNS1035Label(s.Name); len(errs) > 0 {
			t.Errorf("Service %s: name: %v", s.Name, errs)
		}
		d := selectedDeployment(t, "Service "+s.Name, labels.SelectorFromSet(s.Spec.Selector), deployments)
		for _, p := range s.Spec.Ports {
			if !podHasPort(d.Spec.Template.Spec, p.TargetPort) {
				t.Errorf("Service %s: port %s targets %s, which no container of %s declares", s.Name, p.Name, p.TargetPort.String(), d.Name)
			}
		}
	}
	for _, d := range deployments {
		checkDeployment(t, d, help)
	}
	for _, p := range all[*policyv1.PodDisruptionBudget](r) {
		sel := mustSelector(t, "PodDisruptionBudget "+p.Name, p.Spec.Selector)
		d := selectedDeployment(t, "PodDisruptionBudget "+p.Name, sel, deployments)
		if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
			t.Errorf("PodDisruptionBudget %s: neither maxUnavailable nor minAvailable", p.Name)
		}
		if d.Name != "prod-dcaas-kms" {
			t.Errorf("PodDisruptionBudget %s selects %s, not the KMS", p.Name, d.Name)
		}
	}
	for _, np := range all[*networkingv1.NetworkPolicy](r) {
		checkNetworkPolicy(t, np, deployments)
	}
	for _, sm := range all[*monitoringv1.ServiceMonitor](r) {
		sel := mustSelector(t, "ServiceMonitor "+sm.Name, &sm.Spec.Selector)
		var svc *corev1.Service
		for _, s := range all[*corev1.Service](r) {
			if sel.Matches(labels.Set(s.Labels)) {
				svc = s
			}
		}
		if svc == nil {
			t.Fatalf("ServiceMonitor %s selects no Service of the chart", sm.Name)
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("ServiceMonitor %s: port %q is not a port of Service %s", sm.Name, ep.Port, svc.Name)
			}
			checkJobRelabel(t, "ServiceMonitor "+sm.Name, ep.RelabelConfigs, "dcaas-kms")
		}
	}
	for _, pm := range all[*monitoringv1.PodMonitor](r) {
		sel := mustSelector(t, "PodMonitor "+pm.Name, &pm.Spec.Selector)
		d := selectedDeployment(t, "PodMonitor "+pm.Name, sel, deployments)
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil || !podHasPort(d.Spec.Template.Spec, intstr.FromString(*ep.Port)) {
				t.Errorf("PodMonitor %s: port %v is not a port of %s's pods", pm.Name, ep.Port, d.Name)
			}
			checkJobRelabel(t, "PodMonitor "+pm.Name, ep.RelabelConfigs, "dcaas-sidecar")
		}
	}
}

func metaOf(obj any) metav1.ObjectMeta {
	return reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta)
}

func checkLabels(t *testing.T, what string, ls map[string]string) {
	t.Helper()
	for k, v := range ls {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("%s: label key %q: %v", what, k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("%s: label %s=%q: %v", what, k, v, errs)
		}
	}
}

func mustSelector(t *testing.T, what string, ls *metav1.LabelSelector) labels.Selector {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatalf("%s: selector: %v", what, err)
	}
	if sel.Empty() {
		t.Fatalf("%s: empty selector (it would select every pod)", what)
	}
	return sel
}

// selectedDeployment returns the one Deployment whose pods sel selects.
func selectedDeployment(t *testing.T, what string, sel labels.Selector, ds []*appsv1.Deployment) *appsv1.Deployment {
	t.Helper()
	var found []*appsv1.Deployment
	for _, d := range ds {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: selector %s selects the pods of %d Deployments, want 1", what, sel, len(found))
	}
	return found[0]
}

func podHasPort(spec corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		if containerHasPort(c, port) {
			return true
		}
	}
	return false
}

func containerHasPort(c corev1.Container, port intstr.IntOrString) bool {
	for _, p := range c.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

func checkJobRelabel(t *testing.T, what string, rcs []monitoringv1.RelabelConfig, job string) {
	t.Helper()
	for _, rc := range rcs {
		if rc.TargetLabel == "job" && rc.Replacement != nil && *rc.Replacement == job {
			return
		}
	}
	t.Errorf("%s: does not set job=%q (the dashboard and alerts select on it)", what, job)
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, help map[string]helpText) {
	t.Helper()
	what := "Deployment " + d.Name
	sel := mustSelector(t, what, d.Spec.Selector)
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %s does not match its pod labels %v", what, sel, d.Spec.Template.Labels)
	}
	checkLabels(t, what+" pods", d.Spec.Template.Labels)
	spec := d.Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: the pod must run as a non-root uid: %+v", what, psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccomp profile is not RuntimeDefault", what)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it has no use for", what)
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			t.Errorf("%s: volume %s twice", what, v.Name)
		}
		volumes[v.Name] = true
	}
	names := map[string]bool{}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		cw := what + " container " + c.Name
		if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 || names[c.Name] {
			t.Errorf("%s: bad or repeated name %v", cw, errs)
		}
		names[c.Name] = true
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: must not escalate, must have a read-only root filesystem and drop every capability: %+v", cw, sc)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if c.Resources.Requests.Name(res, "").IsZero() || c.Resources.Limits.Name(res, "").IsZero() {
				t.Errorf("%s: no %s request or limit", cw, res)
			}
		}
		if c.Image == "" || strings.Contains(c.Image, "{{") {
			t.Errorf("%s: image %q", cw, c.Image)
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("%s: mounts %s, which is not a volume of the pod", cw, m.Name)
			}
		}
		for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if p == nil {
				continue
			}
			if p.HTTPGet != nil && !containerHasPort(c, p.HTTPGet.Port) {
				t.Errorf("%s: probe of %s on port %s, which the container does not declare", cw, p.HTTPGet.Path, p.HTTPGet.Port.String())
			}
			if p.HTTPGet != nil && !strings.HasPrefix(p.HTTPGet.Path, "/") {
				t.Errorf("%s: probe path %q", cw, p.HTTPGet.Path)
			}
		}
		checkDcaasArgs(t, cw, c, help)
	}
}

// checkDcaasArgs: a container of the dcaas image runs `dcaas SUB CMD
// --flag=value…`; every flag must be one that command's --help lists, and
// every DCAAS_ variable one its help names.
func checkDcaasArgs(t *testing.T, what string, c corev1.Container, help map[string]helpText) {
	t.Helper()
	if len(c.Command) > 0 || len(c.Args) < 2 {
		return // not the dcaas image's entrypoint
	}
	cmd := c.Args[0] + " " + c.Args[1]
	h, ok := help[cmd]
	if !ok {
		t.Errorf("%s: runs dcaas %s, a command the test does not know", what, cmd)
		return
	}
	for _, a := range c.Args[2:] {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q is not a --flag", what, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		kind, ok := h.flags[name]
		switch {
		case !ok:
			t.Errorf("%s: dcaas %s has no flag --%s", what, cmd, name)
		case kind == "" && hasValue:
			t.Errorf("%s: --%s is a switch; it takes no value", what, name)
		case kind != "" && (!hasValue || value == ""):
			t.Errorf("%s: --%s needs a value (%s)", what, name, kind)
		}
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "DCAAS_") && !strings.Contains(h.text, e.Name) {
			t.Errorf("%s: dcaas %s does not read %s", what, cmd, e.Name)
		}
	}
}

func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, ds []*appsv1.Deployment) {
	t.Helper()
	what := "NetworkPolicy " + np.Name
	sel := mustSelector(t, what, &np.Spec.PodSelector)
	kms := selectedDeployment(t, what, sel, ds)
	if kms.Name != "prod-dcaas-kms" {
		t.Fatalf("%s selects %s, not the KMS", what, kms.Name)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("%s: policy types %v, want Ingress", what, np.Spec.PolicyTypes)
	}
	kmsSpec := kms.Spec.Template.Spec
	byPort := map[string][]networkingv1.NetworkPolicyPeer{}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 || len(rule.From) == 0 {
			t.Errorf("%s: a rule open to every port or every peer: %+v", what, rule)
		}
		for _, p := range rule.Ports {
			if p.Port == nil || !podHasPort(kmsSpec, *p.Port) {
				t.Errorf("%s: port %v is not a port of the KMS pods", what, p.Port)
				continue
			}
			byPort[p.Port.String()] = append(byPort[p.Port.String()], rule.From...)
		}
	}
	if len(byPort) != 2 || byPort["https"] == nil || byPort["metrics"] == nil {
		t.Fatalf("%s: want rules for ports https and metrics, got %v", what, byPort)
	}
	// The metrics port: only pods of the monitoring namespace.
	for _, peer := range byPort["metrics"] {
		if peer.NamespaceSelector == nil || len(peer.NamespaceSelector.MatchLabels)+len(peer.NamespaceSelector.MatchExpressions) == 0 || peer.IPBlock != nil {
			t.Errorf("%s: the metrics port is open beyond the monitoring namespace: %+v", what, peer)
		}
	}
	// The API port: only pods with the client labels; the example app's
	// pods (sidecar and agent) carry them, the KMS's and others do not.
	for _, peer := range byPort["https"] {
		if peer.IPBlock != nil {
			continue // extraClientPeers
		}
		if peer.PodSelector == nil {
			t.Fatalf("%s: an API peer without a pod selector admits whole namespaces: %+v", what, peer)
		}
		psel := mustSelector(t, what+" API peer", peer.PodSelector)
		if psel.Matches(labels.Set{"app.kubernetes.io/name": "anything-else"}) {
			t.Errorf("%s: the API peer selector %s admits pods without the client label", what, psel)
		}
		for _, d := range ds {
			if d.Name != kms.Name && !psel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: the pods of %s (sidecars) are not admitted to the API port", what, d.Name)
			}
		}
	}
}

// checkAlertsMatchDeployPrometheus: the PrometheusRule carries exactly the
// rules of deploy/prometheus/dcaas-alerts.yml.
func checkAlertsMatchDeployPrometheus(t *testing.T, r rendered) {
	t.Helper()
	rules := all[*monitoringv1.PrometheusRule](r)
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(rules))
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy/prometheus/dcaas-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var want monitoringv1.PrometheusRuleSpec
	if err := strictDecode(data, &want); err != nil {
		t.Fatalf("deploy/prometheus/dcaas-alerts.yml: %v", err)
	}
	if len(want.Groups) == 0 {
		t.Fatal("deploy/prometheus/dcaas-alerts.yml has no groups")
	}
	if !reflect.DeepEqual(rules[0].Spec, want) {
		g, _ := json.MarshalIndent(rules[0].Spec, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("the chart's PrometheusRule differs from deploy/prometheus/dcaas-alerts.yml (copy it to deploy/helm/dcaas/files/):\n got %s\nwant %s", g, w)
	}
	var n int
	for _, g := range want.Groups {
		n += len(g.Rules)
	}
	if n < 10 {
		t.Errorf("only %d rules in deploy/prometheus/dcaas-alerts.yml", n)
	}
}

// helpText is one dcaas command's --help: its text and its flags (name →
// value type; "" for a switch).
type helpText struct {
	text  string
	flags map[string]string
}

var flagLine = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)(?: (\w+))?\s`)

// dcaasHelp builds dcaas from this repository and reads the --help of the
// commands the chart runs.
func dcaasHelp(t *testing.T) map[string]helpText {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dcaas")
	build := exec.Command("go", "build", "-o", bin, "./cmd/dcaas")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building dcaas: %v\n%s", err, out)
	}
	help := map[string]helpText{}
	for _, cmd := range []string{"kms serve", "sidecar serve", "sidecar enroll"} {
		out, err := exec.Command(bin, append(strings.Fields(cmd), "--help")...).CombinedOutput()
		if err != nil {
			t.Fatalf("dcaas %s --help: %v\n%s", cmd, err, out)
		}
		h := helpText{text: string(out), flags: map[string]string{}}
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			h.flags[m[1]] = m[2]
		}
		if len(h.flags) < 5 {
			t.Fatalf("dcaas %s --help: found only %d flags in:\n%s", cmd, len(h.flags), out)
		}
		help[cmd] = h
	}
	return help
}

// TestHelpParser: the flag list the chart is checked against comes out of
// real help text as expected (a parser that found nothing would let every
// flag through unchecked... or refuse all of them).
func TestHelpParser(t *testing.T) {
	help := dcaasHelp(t)
	for cmd, want := range map[string]map[string]string{
		"kms serve":      {"store": "string", "tls-host": "strings", "pkcs11-create-key": "", "max-conns": "int", "server-cert-ttl": "duration"},
		"sidecar serve":  {"allow-uid": "ints", "kms": "strings", "retire-on-exit": ""},
		"sidecar enroll": {"watch": "duration", "json": ""},
	} {
		for name, kind := range want {
			got, ok := help[cmd].flags[name]
			if !ok || got != kind {
				t.Errorf("dcaas %s: --%s parsed as (%q, %v), want %q", cmd, name, got, ok, kind)
			}
		}
		if _, ok := help[cmd].flags["no-such-flag"]; ok {
			t.Errorf("dcaas %s: parsed a flag that does not exist", cmd)
		}
	}
}
