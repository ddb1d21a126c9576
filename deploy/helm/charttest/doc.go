// Package charttest checks the Helm chart of deploy/helm/dcaas: it renders
// the chart with Helm's own Go packages (loader and engine) under several
// value sets and checks every object it makes strictly against the
// Kubernetes API types (and the Prometheus operator's for ServiceMonitor,
// PodMonitor and PrometheusRule), then checks how the objects fit together:
// selectors, ports, probes, volumes, security settings, and that every flag
// the chart passes to dcaas is one `dcaas … --help` lists. It also checks
// that every Dockerfile of deploy/docker pins its base images by digest.
//
// A module of its own so that Helm and the Kubernetes modules never enter
// the dcaas module's requirements. Run it with `cd deploy/helm/charttest &&
// go test ./...` (scripts/test.sh does).
package charttest
