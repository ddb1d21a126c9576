package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/hardening"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

func newKMSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "kms", Short: "The central KMS"}
	cmd.AddCommand(newKMSServeCmd(), newKMSCACmd())
	cmd.AddCommand(newKMSUnsealCmd(), newKMSSealStatusCmd())
	return cmd
}

type kmsServeFlags struct {
	dataDir        string
	listen         string
	metricsListen  string
	tlsHosts       []string
	passphraseFile string
	log            logFlags
	attestPolicy   string
	store          string
	postgresDSN    string
	seal           sealFlags
	wrapTTL        time.Duration
	rotationCheck  time.Duration
	minRotation    time.Duration
	seedKDFv1      bool
	lapsedKeep     time.Duration
	componentsTTL  time.Duration
	checkpoints    time.Duration
	auditKeep      time.Duration
	certs          certFlags
	limits         limitFlags
	safety         safetyFlags
	approvalTTL    time.Duration // quorum approval requests (issue 16)
}

// certFlags are the certificate lifetimes and the certificate loop's
// interval of `kms serve`.
type certFlags struct {
	appTTL, sidecarTTL, serverTTL, checkInterval time.Duration
}

func (c *certFlags) add(fl *pflag.FlagSet) {
	fl.DurationVar(&c.appTTL, "app-cert-ttl", 365*24*time.Hour, "lifetime of custodian, pipeline and admin client certificates (Go duration: 8760h, 30m, 45s)")
	fl.DurationVar(&c.sidecarTTL, "sidecar-cert-ttl", 30*24*time.Hour, "lifetime of sidecar identity and wrapping certificates")
	fl.DurationVar(&c.serverTTL, "server-cert-ttl", 90*24*time.Hour, "lifetime of the KMS's own TLS server certificate, renewed in place at two thirds of it")
	fl.DurationVar(&c.checkInterval, "cert-check-interval", 30*time.Second, "how often to re-read the CA state (replicas) and check the TLS certificate for renewal; at most a twentieth of --server-cert-ttl is used")
}

// config validates the flags and returns them as the KMS's Config fields.
func (c *certFlags) config(cfg *kms.Config) error {
	for _, f := range []struct {
		name string
		ttl  time.Duration
	}{{"app-cert-ttl", c.appTTL}, {"sidecar-cert-ttl", c.sidecarTTL}, {"server-cert-ttl", c.serverTTL}} {
		switch {
		case f.ttl < kms.MinCertTTL:
			return fmt.Errorf("--%s %v: a certificate must live at least %v", f.name, f.ttl, kms.MinCertTTL)
		case f.ttl > kms.MaxCertTTL:
			return fmt.Errorf("--%s %v: a certificate cannot outlive the CA, %v (%d days)", f.name, f.ttl, kms.MaxCertTTL, kms.MaxCertTTL/(24*time.Hour))
		}
	}
	if c.checkInterval < minCheckInterval || c.checkInterval > time.Hour {
		return fmt.Errorf("--cert-check-interval %v: want between %v and 1h", c.checkInterval, minCheckInterval)
	}
	cfg.AppCertTTL, cfg.InstanceCertTTL, cfg.ServerCertTTL, cfg.CertCheckInterval = c.appTTL, c.sidecarTTL, c.serverTTL, c.checkInterval
	return nil
}

// minCheckInterval keeps the certificate loop from hammering the store.
const minCheckInterval = 100 * time.Millisecond

func newKMSServeCmd() *cobra.Command {
	var f kmsServeFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the KMS API over mutual TLS (initializes the data dir on first start)",
		Long: `Serve the KMS API over HTTPS with mutual TLS.

The first start initializes the data dir: a sealed root key (root.key), the
database (kms.db), a CA (ca.pem), the audit key (sealed in the database; its
public half in audit-key.pem) and admin client credentials (admin/cert.pem,
admin/key.pem). Later starts reuse it.

Audit records are hash-chained and signed with the audit key: the last record
of each transaction, covering the ones before it. The KMS signs a checkpoint
of the log at start, every --audit-checkpoint-interval when it grew, and at a
clean stop (audit-checkpoint.json); 'dcaas audit verify' checks them. Records
older than --audit-retention (90 days) may be archived and pruned ('dcaas
audit archive', 'dcaas audit prune'); younger ones are always kept.

The root key file is protected by its file mode alone unless a passphrase
is given in DCAAS_SEAL_PASSPHRASE or --seal-passphrase-file.

With --store postgres the database is PostgreSQL instead of kms.db (DSN from
--postgres-dsn or DCAAS_POSTGRES_DSN; prefer the variable when the DSN holds
a password). Several replicas on one database share the CA, tenants and keys;
each needs the same root key (copy root.key into every data dir).

Certificates: --app-cert-ttl (default 8760h), --sidecar-cert-ttl (720h) and
--server-cert-ttl (2160h) set their lifetimes (Go durations, at least 1s,
at most the CA's 10 years). The KMS re-issues its own TLS certificate, with
a fresh in-memory key, at two thirds of its lifetime without a restart, and
every --cert-check-interval re-reads the CA state so that replicas follow a
CA rotation ('dcaas kms ca').

Metrics: GET /metrics on the HTTPS listener answers admin client
certificates only. For Prometheus, --metrics-listen serves /metrics,
/healthz and /readyz over plain HTTP, with no authentication: bind it to loopback or a
network only the scraper reaches.

With --seal pkcs11 the root key is a non-extractable AES key inside a
PKCS#11 HSM (--pkcs11-module, --pkcs11-token, --pkcs11-key-label; the PIN
from DCAAS_PKCS11_PIN or --pkcs11-pin-file) and root.key is not used. A new
data dir needs the key to exist, or --pkcs11-create-key; an existing
file-sealed one moves to the HSM with 'dcaas seal migrate'.

Each KMS holds a lease in the database, renewed every --lease-renew-interval
and live for --lease-ttl, deleted at a clean stop: 'dcaas seal migrate'
refuses while a lease is live, and the KMS refuses to start while a
migration holds the database. A KMS whose lease is found gone stops.

On SIGTERM or SIGINT the KMS stops accepting, lets the requests in flight
finish for up to --shutdown-timeout, signs its last audit checkpoint,
releases its lease and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.log.startupError("kms serve", runKMS(cmd.Context(), f))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "dcaas-kms", "data directory (created on first start)")
	fl.StringVar(&f.listen, "listen", defaultKMSListen, "HTTPS listen address HOST:PORT")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "optional plain-HTTP listener for /metrics, /healthz and /readyz, for Prometheus and probes (e.g. 127.0.0.1:9090); the HTTPS listener serves /metrics to admin certificates only")
	fl.StringSliceVar(&f.tlsHosts, "tls-host", nil, "extra DNS names or IPs for the TLS server certificate")
	fl.StringVar(&f.passphraseFile, "seal-passphrase-file", "", "file holding the root-key passphrase (else DCAAS_SEAL_PASSPHRASE)")
	f.log.add(fl)
	fl.StringVar(&f.attestPolicy, "attestation-policy", "", "JSON file enabling TPM attestation enrollment: allowed AK fingerprints, their custodians, required PCRs, attestation profiles, TPM manufacturer roots (reloaded on SIGHUP and when it changes)")
	fl.StringVar(&f.store, "store", "sqlite", "database: sqlite (DIR/kms.db) or postgres (several replicas)")
	fl.StringVar(&f.postgresDSN, "postgres-dsn", "", "PostgreSQL DSN for --store postgres (else DCAAS_POSTGRES_DSN)")
	fl.StringVar(&f.seal.kind, "seal", "file", "root of trust: file (DIR/root.key) or pkcs11 (an HSM)")
	fl.DurationVar(&f.approvalTTL, "approval-ttl", 24*time.Hour, "how long a quorum approval request stays open (approved and run before it)")
	fl.DurationVar(&f.wrapTTL, "wrap-ttl", 10*time.Minute, "how long a sidecar accepts keys sealed to it (rewrap, load, derive answers); a saved answer is refused after it")
	fl.DurationVar(&f.rotationCheck, "rotation-check-interval", time.Minute, "how often the KMS rotates keys whose rotation period passed or whose usage neared the safe limit")
	fl.DurationVar(&f.minRotation, "min-rotation-period", time.Hour, "shortest rotation period a key may ask for; lower it only to compress time in tests")
	fl.DurationVar(&f.lapsedKeep, "lapsed-instance-retention", 7*24*time.Hour, "how long a sidecar instance whose certificates expired stays listed before it is deleted with its release records")
	fl.BoolVar(&f.seedKDFv1, "seed-kdf-v1", true, "derive seeds with SeedKDF v1 when asked (the tenant-wide key of data made before v2); false once that data is re-encrypted under v2 keys")
	fl.DurationVar(&f.componentsTTL, "components-ttl", 24*time.Hour, "how long a key being entered in components (POST /v1/key-components) lasts, complete or not")
	fl.DurationVar(&f.checkpoints, "audit-checkpoint-interval", 5*time.Minute, "how often the KMS signs a checkpoint of the audit log (when it grew); also at start and at a clean stop")
	fl.DurationVar(&f.auditKeep, "audit-retention", 90*24*time.Hour, "how long every audit record is kept: 'dcaas audit prune' may delete only older ones (after 'dcaas audit archive')")
	f.seal.addPKCS11(fl)
	f.certs.add(fl)
	f.limits.register(fl, "--listen", 4096, 1024)
	f.safety.addKMS(fl)
	return cmd
}

// readPassphrase reads a secret from a file or an environment variable,
// never from a command-line argument (which would show in ps).
func readPassphrase(path, env string) (*secret.Bytes, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		s := secret.Copy([]byte(strings.TrimRight(string(b), "\r\n")))
		secret.Zero(b)
		return s, nil
	}
	if v, ok := os.LookupEnv(env); ok && v != "" {
		return secret.Copy([]byte(v)), nil
	}
	return nil, nil
}

// serverHosts lists the names the TLS server certificate must cover.
func serverHosts(listen string, extra []string) ([]string, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w", listen, err)
	}
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, extra...)
	switch host {
	case "", "0.0.0.0", "::":
		if h, err := os.Hostname(); err == nil {
			hosts = append(hosts, h)
		}
	default:
		hosts = append(hosts, host)
	}
	return hosts, nil
}

func runKMS(ctx context.Context, f kmsServeFlags) error {
	log, err := f.log.newLogger()
	if err != nil {
		return err
	}
	var cfg kms.Config
	if err := f.certs.config(&cfg); err != nil {
		return err
	}
	hosts, err := serverHosts(f.listen, f.tlsHosts)
	if err != nil {
		return err
	}
	pass, err := readPassphrase(f.passphraseFile, "DCAAS_SEAL_PASSPHRASE")
	if err != nil {
		return err
	}
	defer pass.Wipe()
	reg, err := newServeRegistry()
	if err != nil {
		return err
	}
	if f.approvalTTL < time.Second || f.approvalTTL > 30*24*time.Hour {
		return fmt.Errorf("--approval-ttl %s: want between 1s and 720h", f.approvalTTL)
	}
	if f.wrapTTL < time.Second || f.wrapTTL > 24*time.Hour {
		return fmt.Errorf("--wrap-ttl %s: want between 1s and 24h", f.wrapTTL)
	}
	if f.rotationCheck < 10*time.Millisecond {
		return fmt.Errorf("--rotation-check-interval %s: want at least 10ms", f.rotationCheck)
	}
	if f.lapsedKeep <= 0 {
		return fmt.Errorf("--lapsed-instance-retention %s: want more than 0", f.lapsedKeep)
	}
	if f.minRotation < time.Second {
		return fmt.Errorf("--min-rotation-period %s: want at least 1s", f.minRotation)
	}
	if f.componentsTTL < time.Minute || f.componentsTTL > 30*24*time.Hour {
		return fmt.Errorf("--components-ttl %s: want between 1m and 720h", f.componentsTTL)
	}
	if f.checkpoints < time.Second {
		return fmt.Errorf("--audit-checkpoint-interval %s: want at least 1s", f.checkpoints)
	}
	if f.auditKeep < time.Second {
		return fmt.Errorf("--audit-retention %s: want at least 1s", f.auditKeep)
	}
	if err := f.safety.validate(); err != nil {
		return err
	}
	opts := kms.Options{DataDir: f.dataDir, ServerHosts: hosts, Passphrase: pass, Logger: log, Reg: reg, Config: cfg, Lease: f.safety.lease()}
	opts.Config.WrapTTL, opts.Config.RotationCheckInterval = f.wrapTTL, f.rotationCheck
	opts.Config.ApprovalTTL = f.approvalTTL
	opts.Config.MinRotationPeriod, opts.Config.AuditCheckpointInterval = f.minRotation, f.checkpoints
	opts.Config.ComponentsTTL = f.componentsTTL
	opts.Config.RefuseSeedKDFv1 = !f.seedKDFv1
	opts.Config.LapsedInstanceRetention = f.lapsedKeep
	opts.Config.AuditRetention = f.auditKeep
	// Bind first: a bad or busy address fails before the data dir is
	// initialized.
	if err := f.limits.validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", f.listen, err)
	}
	defer ln.Close()
	ln = f.limits.wrap(ln, reg, "dcaas_kms")
	mln, err := listenOptional("metrics-listen", f.metricsListen)
	if err != nil {
		return err
	}
	if mln != nil {
		defer mln.Close()
	}
	st, err := openStore(ctx, f)
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close()
		opts.Store = st
	}
	sealer, err := f.seal.openForServe(f.passphraseFile)
	if err != nil {
		return err
	}
	if sealer != nil {
		defer sealer.Close()
		opts.Sealer = sealer
	}
	if f.attestPolicy != "" {
		if opts.Config.Attestation, err = kms.LoadAttestationPolicy(f.attestPolicy); err != nil {
			return err
		}
	}
	// Every secret the environment held has been read: take it out of the
	// environment and of the process's initial environment block (which
	// /proc/<pid>/environ shows for the process's life), then make the
	// process non-dumpable, as the sidecar is.
	if err := hardening.ScrubEnv("DCAAS_SEAL_PASSPHRASE", envPKCS11PIN, "DCAAS_POSTGRES_DSN"); err != nil {
		log.Warn("could not scrub secrets from the process's initial environment; prefer the *-file flags", "err", err)
	}
	if err := hardening.Process(); err != nil {
		return err
	}
	// A data dir whose root key is split into unseal key shares (dcaas
	// seal init) starts sealed: the gate serves until enough shares are
	// posted, then opens the KMS in-process (unseal.go).
	var (
		srv       *kms.Server
		gate      *datadir.Sealed
		handler   http.Handler
		tlsCfg    *tls.Config
		leaseLost <-chan struct{}
	)
	if _, split, err := datadir.ShareSealed(f.dataDir); err != nil {
		return err
	} else if split && opts.Sealer == nil {
		if gate, err = datadir.OpenSealed(ctx, opts); err != nil {
			return err
		}
		defer gate.Close()
		handler, tlsCfg, leaseLost = gate.Handler(), gate.TLSConfig(), gateLeaseLost(gate)
	} else {
		if srv, err = datadir.Open(ctx, opts); err != nil {
			return err
		}
		defer srv.Close()
		handler, tlsCfg, leaseLost = srv.KMS.Handler(), srv.TLSConfig, srv.LeaseLost()
	}
	// The attestation policy (allow-list, profiles, manufacturer roots)
	// reloads on SIGHUP and when the file changes; a bad file keeps the
	// policy in force and is logged. SIGHUP is caught either way, so a
	// reload (systemctl reload) never stops the KMS. A sealed KMS watches
	// from the moment it is unsealed.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if f.attestPolicy != "" {
		tick := time.NewTicker(attestPolicyPoll)
		defer tick.Stop()
		go func() {
			s := srv
			if gate != nil {
				select {
				case <-gate.Unsealed():
					s = gate.Server()
				case <-ctx.Done():
					return
				}
			}
			s.KMS.WatchAttestationPolicy(ctx, f.attestPolicy, hup, tick.C)
		}()
	} else {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					log.Info("SIGHUP: nothing to reload (no --attestation-policy)")
				}
			}
		}()
	}

	// The HTTPS listener serves GET /metrics to admin callers only (the
	// KMS's router, from reg); Prometheus scrapes --metrics-listen.
	hs := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 2)
	listening := ""
	go func() { errc <- hs.Serve(tls.NewListener(ln, tlsCfg)) }()
	var ms *http.Server
	if mln != nil {
		ms = metricsServer(reg, handler)
		go func() { errc <- ms.Serve(mln) }()
		listening = " metrics=http://" + mln.Addr().String()
	}
	dir, _ := filepath.Abs(f.dataDir)
	ready := func(srv *kms.Server) {
		if p, ok := srv.Sealer.(interface{ Protected() bool }); ok && !p.Protected() {
			log.Warn("the root key file is protected by its file mode only: set DCAAS_SEAL_PASSPHRASE (or --seal-passphrase-file) or use --seal pkcs11 outside development",
				"root_key", filepath.Join(dir, "root.key"))
		}
		fmt.Printf("dcaas kms ready: https://%s data-dir=%s ca=%s admin-cert=%s admin-key=%s seal=%s fips=%t store=%s%s\n",
			ln.Addr(), dir, filepath.Join(dir, kms.CAFile), filepath.Join(dir, kms.AdminCert), filepath.Join(dir, kms.AdminKey),
			srv.Sealer.Name(), kcrypto.FIPS(), f.store, listening)
		log.Info("kms serving", "addr", ln.Addr().String(), "initialized", srv.Initialized)
	}
	if gate != nil {
		set := gate.Set()
		fmt.Printf("dcaas kms sealed: https://%s data-dir=%s ca=%s share-set=%s threshold=%d shares=%d%s\n",
			ln.Addr(), dir, filepath.Join(dir, kms.CAFile), set.IDString(), set.Threshold, set.Shares, listening)
		log.Info("kms sealed: waiting for unseal key shares", "addr", ln.Addr().String(), "share_set", set.IDString(), "threshold", set.Threshold)
		go func() {
			select {
			case <-gate.Unsealed():
				ready(gate.Server())
			case <-ctx.Done():
			}
		}()
	} else {
		ready(srv)
	}

	var stopErr error
	select {
	case <-ctx.Done():
	case <-leaseLost:
		stopErr = errors.New("this replica's lease is gone from the store (a seal migration began while it was unreachable or paused): stopped; start it again once the migration is done, with the new seal")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	// Stop accepting, then let the requests in flight finish, for at most
	// --shutdown-timeout; the deferred srv.Close then signs the last audit
	// checkpoint and releases the lease.
	log.Info("kms stopping: draining requests in flight", "timeout", f.safety.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), f.safety.shutdownTimeout)
	defer cancel()
	if ms != nil {
		_ = ms.Shutdown(sctx)
	}
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("requests still in flight after --shutdown-timeout %v were cut: %w", f.safety.shutdownTimeout, err)
	}
	return stopErr
}

// openStore opens the database --store names: nil for sqlite (datadir.Open
// opens DIR/kms.db itself), a PostgreSQL store the caller closes for
// postgres.
func openStore(ctx context.Context, f kmsServeFlags) (*sqlstore.DB, error) {
	dsn := f.postgresDSN
	if dsn == "" {
		dsn = os.Getenv("DCAAS_POSTGRES_DSN")
	}
	switch f.store {
	case "sqlite":
		if f.postgresDSN != "" {
			return nil, errors.New("--postgres-dsn needs --store postgres")
		}
		return nil, nil
	case "postgres":
		if dsn == "" {
			return nil, errors.New("--store postgres needs --postgres-dsn or DCAAS_POSTGRES_DSN")
		}
		return sqlstore.OpenPostgres(ctx, dsn)
	}
	return nil, fmt.Errorf("--store %q: want sqlite or postgres", f.store)
}

// gateLeaseLost is closed when the KMS the gate opened loses its lease;
// never while sealed.
func gateLeaseLost(g *datadir.Sealed) <-chan struct{} {
	lost := make(chan struct{})
	go func() {
		<-g.Unsealed()
		<-g.Server().LeaseLost()
		close(lost)
	}()
	return lost
}

// attestPolicyPoll is how often kms serve looks whether the attestation
// policy file changed.
const attestPolicyPoll = 5 * time.Second
