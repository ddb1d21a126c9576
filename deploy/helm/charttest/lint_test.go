package charttest

import (
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// TestHelmLint runs `helm lint`'s rules (Chart.yaml, values, templates,
// deprecated APIs for the Kubernetes version) and fails on any warning.
func TestHelmLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for name, vals := range map[string]map[string]any{
		"defaults":    baseValues(),
		"example app": merge(baseValues(), map[string]any{"exampleApp": map[string]any{"enabled": true}}),
	} {
		l := lint.RunAll(chartDir, vals, namespace, lint.WithKubeVersion(kv))
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %v", name, m)
			} else {
				t.Logf("%s: %v", name, m)
			}
		}
	}
}
