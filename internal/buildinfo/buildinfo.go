// Package buildinfo says which dcaas this binary is: the version the
// Makefile stamps (`git describe --always --dirty`, through -ldflags "-X
// github.com/dcaas/dcaas/internal/buildinfo.version=…") and what the Go
// toolchain recorded (module version, VCS revision and time). It backs
// `dcaas version`, the dcaas_build_info metric and the version field of
// /healthz and /readyz.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// version and revision are set by the Makefile's build target (the
// revision for builds where the toolchain records no VCS information,
// as with -buildvcs=false).
var version, revision string

// Info describes the running binary.
type Info struct {
	Version   string // stamped version, else the module version, else "unknown"
	GoVersion string
	Revision  string // VCS commit ("" when not recorded)
	Time      string // VCS commit time, RFC 3339 ("" when not recorded)
	Modified  bool   // built from a work tree with uncommitted changes
}

var get = sync.OnceValue(func() Info {
	in := Info{Version: version, GoVersion: runtime.Version(), Revision: revision}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		// Neither stamped nor recorded (go run, a test binary): say so
		// rather than "(devel)", with the commit when there is one.
		in.Version = "unknown"
		if in.Revision != "" {
			in.Version = "unknown-" + short(in.Revision)
		}
	}
	return in
})

// Get returns the running binary's build information.
func Get() Info { return get() }

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// Register adds the dcaas_build_info gauge (always 1, labelled with the
// version, Go version and revision) to reg.
func Register(reg prometheus.Registerer) error {
	in := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "dcaas_build_info",
		Help:        "Always 1; its labels say which dcaas build is running (version, Go version, VCS revision).",
		ConstLabels: prometheus.Labels{"version": in.Version, "goversion": in.GoVersion, "revision": in.Revision},
	})
	g.Set(1)
	return reg.Register(g)
}
