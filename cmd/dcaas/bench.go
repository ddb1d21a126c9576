package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/internal/bench"
	"github.com/dcaas/dcaas/internal/devenv"
)

type benchFlags struct {
	opts      bench.Options
	modes     string
	keys      int
	noLoad    bool
	breakdown bool
	jsonOut   bool
	plotFile  string
	cpuProf   string
}

// benchReport is what --json prints.
type benchReport struct {
	Machine  string             `json:"machine"`
	Command  string             `json:"command"`
	Op       string             `json:"op"`
	Size     int                `json:"size"`
	Clients  int                `json:"concurrency"`
	Duration string             `json:"duration_per_mode"`
	Modes    []bench.Result     `json:"modes"`
	EnrollMS float64            `json:"enroll_ms,omitempty"`
	Loading  []bench.LoadResult `json:"loading,omitempty"`
	// Breakdown (--breakdown) is where one Unix-socket encrypt spends its
	// time.
	Breakdown []bench.Stage `json:"breakdown,omitempty"`
}

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure every deployment shape side by side, and key loading by every flow",
		Long: `Run a KMS and a sidecar in this process on loopback and measure the same
operation (default: 1 KiB AES-256-GCM encrypt), closed loop, through:
  library      the sidecar in-process (Go calls)
  unix         the sidecar over its Unix socket, one operation per request
  unix-batch   the same, --batch operations per request
  transit      the sidecar's Vault/OpenBao transit API on its Unix socket
  grpc-kms-plugin  the Kubernetes KMS v2 plugin (gRPC on a Unix socket);
               encrypt and decrypt only, plaintexts cut to 512 bytes
  mtls         the sidecar over loopback mutual TLS
  central      the KMS central path over mutual TLS (what dcaas replaces)
  central+rtt  the central path through a proxy adding --rtt round-trip time
Then it measures start → enrolled and loading --keys keys by each flow.
With --breakdown it also times each stage of one Unix-socket encrypt
(crypto, engine, decode, encode, client, transport) on its own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.opts.Concurrency, "concurrency", 8, "closed-loop clients per mode")
	fl.DurationVar(&f.opts.Duration, "duration", 5*time.Second, "measuring time per mode")
	fl.IntVar(&f.opts.Size, "size", 1024, "message size in bytes")
	fl.StringVar(&f.opts.Op, "op", "encrypt", "operation: encrypt, decrypt, mac, sign")
	fl.IntVar(&f.opts.Batch, "batch", 100, "operations per request in unix-batch mode")
	fl.DurationVar(&f.opts.RTT, "rtt", 0, "also measure the central path behind a proxy adding this round-trip time (e.g. 500us)")
	fl.StringVar(&f.modes, "modes", "", "comma-separated subset of modes (default: all)")
	fl.IntVar(&f.keys, "keys", 10000, "keys to load by each flow in the loading benchmark")
	fl.BoolVar(&f.noLoad, "no-loading", false, "skip the key-loading benchmark")
	fl.BoolVar(&f.breakdown, "breakdown", false, "also show where one Unix-socket encrypt of --size bytes spends its time, stage by stage")
	fl.BoolVar(&f.jsonOut, "json", false, "print a JSON report instead of tables")
	fl.StringVar(&f.plotFile, "plot", "", "write a PNG bar chart of the modes to this file")
	fl.StringVar(&f.cpuProf, "cpuprofile", "", "write a CPU profile of the whole run (KMS, sidecar and clients share this process) to this file, for go tool pprof")
	return cmd
}

// progressLine shows progress on stderr when it is a terminal.
func progressLine() func(string, float64) {
	if fi, err := os.Stderr.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return func(what string, done float64) {
		const width = 30
		n := int(done * width)
		fmt.Fprintf(os.Stderr, "\r%-24s [%s%s] %3.0f%%", what, strings.Repeat("=", n), strings.Repeat(" ", width-n), done*100)
		if done >= 1 {
			fmt.Fprint(os.Stderr, "\r\033[K")
		}
	}
}

func runBench(ctx context.Context, out io.Writer, f benchFlags) error {
	if f.modes != "" {
		f.opts.Modes = strings.Split(f.modes, ",")
	}
	f.opts.Progress = progressLine()
	if f.cpuProf != "" {
		pf, err := os.Create(f.cpuProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return err
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	dir, err := os.MkdirTemp("", "dcaas-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env, err := devenv.Start(ctx, devenv.Options{DataDir: dir, NoRequestLog: true})
	if err != nil {
		return err
	}
	defer env.Close()
	results, err := bench.Run(ctx, env, f.opts)
	if err != nil {
		return err
	}
	rep := benchReport{
		Machine: fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		Command: "dcaas " + strings.Join(os.Args[2:], " "),
		Op:      f.opts.Op, Size: f.opts.Size, Clients: f.opts.Concurrency, Duration: f.opts.Duration.String(),
		Modes: results,
	}
	if rep.Op == "" {
		rep.Op = "encrypt"
	}
	if !f.noLoad {
		enroll, loads, err := bench.Loading(ctx, env, f.keys, filepath.Join(dir, "loading-sidecar"), f.opts.Progress)
		if err != nil {
			return err
		}
		rep.EnrollMS = float64(enroll.Microseconds()) / 1e3
		rep.Loading = loads
	}
	if f.breakdown {
		if rep.Breakdown, err = bench.Breakdown(ctx, env, f.opts.Size); err != nil {
			return err
		}
	}
	if f.plotFile != "" {
		pf, err := os.Create(f.plotFile)
		if err != nil {
			return err
		}
		title := fmt.Sprintf("dcaas bench: %d-byte %s, %d clients, %s", f.opts.Size, rep.Op, f.opts.Concurrency, rep.Machine)
		if err := bench.Plot(pf, title, results); err != nil {
			pf.Close()
			return err
		}
		if err := pf.Close(); err != nil {
			return err
		}
	}
	if f.jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(out, "%d-byte %s, closed loop, %d clients, %s per mode; %s\n\n", f.opts.Size, rep.Op, f.opts.Concurrency, f.opts.Duration, rep.Machine)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tops/s\tp50 µs\tp99 µs\tp99.9 µs\tvs central\terrors\t")
	for _, r := range results {
		vs := "-" // central was not measured
		if r.VsCentral > 0 {
			vs = fmt.Sprintf("x%.1f", r.VsCentral)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%d\t\n", r.Mode, bench.Human(r.OpsPerSec), r.P50us, r.P99us, r.P999us, vs, r.Errors)
	}
	tw.Flush()
	if rep.Loading != nil {
		fmt.Fprintf(out, "\nstart → enrolled: %.0f ms\n\n", rep.EnrollMS)
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "loading flow\tkeys\tseconds\tkeys/s\tCPU s\t")
		for _, l := range rep.Loading {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%.2f\t\n", l.Flow, l.Keys, l.Seconds, bench.Human(l.KeysPerSec), l.CPUSeconds)
		}
		tw.Flush()
	}
	if rep.Breakdown != nil {
		fmt.Fprintf(out, "\none %d-byte encrypt over the Unix socket, one request at a time:\n\n", f.opts.Size)
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "stage\tns\tshare\twhat")
		for _, st := range rep.Breakdown {
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f %%\t%s\n", st.Stage, st.NsOp, st.Share*100, st.What)
		}
		tw.Flush()
	}
	return nil
}
