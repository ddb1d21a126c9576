package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/hardening"
	"github.com/dcaas/dcaas/sidecar"
)

func newSidecarCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sidecar", Short: "The crypto sidecar that serves one application's keys locally"}
	cmd.AddCommand(newSidecarServeCmd(), newSidecarEnrollCmd())
	return cmd
}

type sidecarFlags struct {
	kmsURLs       []string
	acceptLegacy  bool
	caFile        string
	dataDir       string
	socket        string
	socketMode    string
	allowUIDs     []int
	listen        string
	enclave       string
	tpmDevice     string
	tokenFile     string
	kem           string
	attest        bool
	ekCert        string        // --tpm-ek-cert: a file, or "nv"
	reattest      time.Duration // --reattest-interval
	lease         time.Duration
	poll          time.Duration
	auditMiB      int
	auditKeep     int
	metricsListen string
	log           logFlags
	requestLog    bool
	retireOnExit  bool
	limits        limitFlags
	kmsPlugin     kmsPluginFlags
	safety        safetyFlags
}

func newSidecarServeCmd() *cobra.Command {
	var f sidecarFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the crypto API on a Unix socket (and optionally loopback mTLS), enrolling with the KMS",
		Long: `Serve the crypto API, enrolling with the KMS.

Every listener (the socket, --listen, --metrics-listen) is bound first, so a
busy port fails before anything is enrolled or any token is used.

The enrollment secret comes from DCAAS_ENROLL_TOKEN or --enroll-token-file,
never from a command-line argument (it would show in ps). With --enclave tpm
and --attest the sidecar enrolls with TPM attestation instead. Without
either, the sidecar starts anyway and waits: GET /v1/status says
"enrolled": false until its custodian hands it a token over the socket
(POST /v1/enroll; 'dcaas sidecar enroll' does it). A restarted
software-enclave sidecar recovers that way with no person involved.

A software-enclave sidecar revokes its own instance at the KMS when it
stops (SIGTERM, SIGINT): its identity key dies with the process, so a
deleted pod leaves no live instance registered (--retire-on-exit=false
keeps it). A killed one (SIGKILL, OOM) cannot; its custodian's
'dcaas sidecar enroll' revokes it at the next start.

--kms takes several replicas (repeat it or separate with commas): every
call to the KMS fails over from one to the next.

The Unix socket is created with mode 0600 and every connection's peer uid
is checked against --allow-uid (default: this process's uid). --listen adds
a TCP listener that requires a client certificate of the bound custodian.

The same socket and listener also serve the Vault/OpenBao transit API
(/v1/transit/…, docs/transit.md). --kms-plugin-socket adds the Kubernetes
KMS v2 plugin (gRPC) for the API server, with the loaded key
--kms-plugin-key (docs/kubernetes-kms.md).

On SIGTERM or SIGINT the sidecar stops accepting (its socket files are
removed at once), lets the requests in flight finish for up to
--shutdown-timeout, then wipes its keys and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.log.startupError("sidecar serve", runSidecar(cmd.Context(), f))
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.kmsURLs, "kms", nil, "KMS base URL, e.g. https://127.0.0.1:8443; repeatable or comma-separated for replicas (required)")
	fl.BoolVar(&f.acceptLegacy, "accept-legacy-wrap", false, "also import rewrap answers of the old wrapped-key format 1 (no issue time: replayable); for a KMS not upgraded yet")
	fl.StringVar(&f.caFile, "ca", "", "KMS CA certificate PEM file (required)")
	fl.StringVar(&f.dataDir, "data-dir", "dcaas-sidecar", "data directory (enrollment certificates, local audit log)")
	fl.StringVar(&f.socket, "socket", "", "Unix socket path (default DATA-DIR/sidecar.sock)")
	fl.IntSliceVar(&f.allowUIDs, "allow-uid", nil, "Unix uid allowed on the socket (repeatable; default: own uid)")
	fl.StringVar(&f.socketMode, "socket-mode", "0600", "socket file mode (octal); 0660 lets the socket's group connect, --allow-uid still decides who is served")
	fl.StringVar(&f.listen, "listen", "", "optional TCP listen address HOST:PORT for mutual TLS")
	fl.StringVar(&f.enclave, "enclave", "software", "where keys live: software or tpm")
	fl.StringVar(&f.tpmDevice, "tpm-device", "/dev/tpmrm0", "TPM device for --enclave tpm")
	fl.StringVar(&f.tokenFile, "enroll-token-file", "", "file holding the one-time enrollment token (else DCAAS_ENROLL_TOKEN)")
	fl.StringVar(&f.kem, "kem", "", "key-transport KEM: x25519, p256, mlkem768-x25519, mlkem768-p256 (default: x25519; p256 in FIPS mode or with a TPM)")
	fl.BoolVar(&f.attest, "attest", false, "enroll with TPM attestation (needs --enclave tpm)")
	fl.StringVar(&f.ekCert, "tpm-ek-cert", "", "with --attest: the TPM's EK certificate (PEM or DER file), or \"nv\" to read it from the TPM (NV index 0x01C0000A), so the KMS trusts the attestation key through the EK's manufacturer chain instead of its allow-list")
	fl.DurationVar(&f.reattest, "reattest-interval", sidecar.DefaultReattestInterval, "with --attest: how often to send the KMS a fresh TPM quote (also after each certificate renewal), for keys whose policy bounds the attestation's age; negative turns it off")
	fl.DurationVar(&f.lease, "lease", 24*time.Hour, "lease of loaded keys (never past a key's expiry)")
	fl.IntVar(&f.auditMiB, "audit-max-mib", sidecar.DefaultAuditMaxBytes>>20, "rotate the local audit log (DATA-DIR/audit.jsonl) past this many MiB")
	fl.IntVar(&f.auditKeep, "audit-keep", sidecar.DefaultAuditKeep, "how many rotated local audit logs to keep (audit.jsonl.1 the newest)")
	fl.DurationVar(&f.poll, "poll-interval", 10*time.Second, "how often to poll the KMS for revocations (and renew leases)")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "optional plain-HTTP listener for /metrics, /healthz and /readyz (e.g. 127.0.0.1:9091)")
	f.log.add(fl)
	fl.BoolVar(&f.requestLog, "request-log", true, "log one line per request at info level (method, route, status, caller, duration, request id); false saves its cost on a busy socket")
	fl.BoolVar(&f.retireOnExit, "retire-on-exit", true, "software enclave: revoke this instance at the KMS when the sidecar stops (its identity dies with the process); ignored with --enclave tpm, which reuses its enrollment")
	f.limits.register(fl, "--listen", 1024, 256)
	f.kmsPlugin.register(fl)
	f.safety.addShutdown(fl)
	return cmd
}

func runSidecar(ctx context.Context, f sidecarFlags) (err error) {
	if len(f.kmsURLs) == 0 || f.caFile == "" {
		return errors.New("--kms and --ca are required")
	}
	if err := f.kmsPlugin.validate(); err != nil {
		return err
	}
	if err := f.limits.validate(); err != nil {
		return err
	}
	if err := f.safety.validate(); err != nil {
		return err
	}
	log, err := f.log.newLogger()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(f.caFile)
	if err != nil {
		return fmt.Errorf("--ca: %w", err)
	}
	tok, err := readPassphrase(f.tokenFile, "DCAAS_ENROLL_TOKEN")
	if err != nil {
		return fmt.Errorf("--enroll-token-file: %w", err)
	}
	// The token leaves the environment as soon as it is read, and the
	// process's initial environment block too, so child processes and
	// readers of /proc/<pid>/environ don't see it.
	if err := hardening.ScrubEnv("DCAAS_ENROLL_TOKEN"); err != nil {
		log.Warn("could not scrub the token from the process's initial environment; prefer --enroll-token-file", "err", err)
	}
	defer tok.Wipe()

	if f.auditMiB < 1 || f.auditMiB > 1<<20 {
		return fmt.Errorf("--audit-max-mib %d: want 1 to %d", f.auditMiB, 1<<20)
	}
	if f.auditKeep < 1 || f.auditKeep > 1000 {
		return fmt.Errorf("--audit-keep %d: want 1 to 1000", f.auditKeep)
	}

	// Bind every listener before anything else: a busy address fails here,
	// before a token is spent or an instance registered.
	socket := f.socket
	if socket == "" {
		socket = filepath.Join(f.dataDir, "sidecar.sock")
	}
	mode, err := strconv.ParseUint(f.socketMode, 8, 32)
	if err != nil {
		return fmt.Errorf("--socket-mode %q: %w", f.socketMode, err)
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	ln, err := sidecar.ListenUnixMode(socket, os.FileMode(mode))
	if err != nil {
		return err
	}
	defer ln.Close()
	tln, err := listenOptional("listen", f.listen)
	if err != nil {
		return err
	}
	if tln != nil {
		defer tln.Close()
	}
	mln, err := listenOptional("metrics-listen", f.metricsListen)
	if err != nil {
		return err
	}
	if mln != nil {
		defer mln.Close()
	}

	enc, err := openEnclave(ctx, f)
	if err != nil {
		return err
	}
	if enc != nil {
		defer enc.Close()
	}
	reg, err := newServeRegistry()
	if err != nil {
		return err
	}
	cfg := sidecar.Config{
		KMSURLs: splitURLs(f.kmsURLs), CAPEM: caPEM, DataDir: f.dataDir,
		Enclave: enc, Attest: f.attest, KEM: api.KEM(f.kem), AllowUIDs: f.allowUIDs,
		LeaseTTL: f.lease, HealthInterval: f.poll, AcceptLegacyWrap: f.acceptLegacy, Logger: log, Reg: reg,
		AuditMaxBytes: int64(f.auditMiB) << 20, AuditKeep: f.auditKeep,
		// A software enclave's identity dies with the process: retire it
		// at the KMS on the way out. A TPM one is reused at the next start.
		RetireOnClose:   f.retireOnExit && enc == nil,
		ShutdownTimeout: f.safety.shutdownTimeout,
		NoRequestLog:    !f.requestLog,
	}
	if f.attest {
		cfg.ReattestInterval = f.reattest
	}
	switch f.ekCert {
	case "":
	case "nv":
		cfg.EKCertFromTPM = true
	default:
		raw, err := os.ReadFile(f.ekCert)
		if err != nil {
			return err
		}
		if cfg.EKCert, err = sidecar.ParseEKCert(raw); err != nil {
			return err
		}
	}
	cfg.EnrollToken = tok // nil without a token; wiped below
	sc, err := sidecar.New(ctx, cfg)
	cfg.EnrollToken = nil
	if err != nil {
		return err
	}
	defer sc.Close()

	// Every server sends its end on errc; serving counts those that drain
	// on ctx's end (not the metrics listener).
	errc := make(chan error, 4)
	serving := 1
	go func() { errc <- sc.Serve(ctx, ln) }()
	listening := ""
	if tln != nil {
		mtls, err := sc.TLSListener(ctx, f.limits.wrap(tln, reg, "dcaas_sidecar"))
		if err != nil {
			return err
		}
		listening = " listen=https://" + tln.Addr().String()
		serving++
		go func() { errc <- sc.Serve(ctx, mtls) }()
	}
	if mln != nil {
		ms := metricsServer(reg, sc.Handler())
		go func() { errc <- ms.Serve(mln) }()
		defer ms.Close()
	}
	if p, err := f.kmsPlugin.start(ctx, sc, f.allowUIDs, f.safety.shutdownTimeout, log, errc); err != nil {
		return err
	} else if p != "" {
		serving++
		listening += " kms-plugin-socket=" + p
	}
	st := sc.Status(ctx)
	if st.Enrolled {
		if tln != nil {
			listening += " tls-server-name=" + sc.ServerName()
		}
		fmt.Printf("dcaas sidecar ready: instance=%s custodian=%q enclave=%s socket=%s%s\n",
			sc.InstanceID(), sc.CustodianDN(), st.Enclave, socket, listening)
	} else {
		fmt.Printf("dcaas sidecar ready: enrolled=false enclave=%s socket=%s%s (waiting for a token: dcaas sidecar enroll --socket %s)\n",
			st.Enclave, socket, listening, socket)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
	// SIGTERM or SIGINT: every server stops accepting, removes its socket
	// and drains its requests in flight (at most --shutdown-timeout) before
	// the deferred Close wipes the keys and retires the instance.
	log.Info("sidecar stopping: draining requests in flight", "timeout", f.safety.shutdownTimeout)
	var errs []error
	for range serving {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// splitURLs accepts repeated and comma-separated URLs.
func splitURLs(in []string) []string {
	var out []string
	for _, v := range in {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
				out = append(out, u)
			}
		}
	}
	return out
}

// openEnclave opens the enclave the flags name; nil means the sidecar's
// default (a software enclave it owns).
func openEnclave(ctx context.Context, f sidecarFlags) (enclave.Enclave, error) {
	switch f.enclave {
	case "software", "":
		if f.attest {
			return nil, errors.New("--attest needs --enclave tpm")
		}
		if f.ekCert != "" {
			return nil, errors.New("--tpm-ek-cert needs --enclave tpm")
		}
		return nil, nil
	case "tpm":
		return openTPM(ctx, f)
	}
	return nil, fmt.Errorf("--enclave %q: use software or tpm", f.enclave)
}
