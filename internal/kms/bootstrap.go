package kms

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dcaas/dcaas/internal/atomicfile"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/internal/ca"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// Files a data dir holds (internal/datadir opens the first two and writes
// the admin credentials).
const (
	DBFile       = "kms.db"
	RootKeyFile  = "root.key"
	CAFile       = "ca.pem"
	AdminCert    = "admin/cert.pem"
	AdminKey     = "admin/key.pem"
	caSetting    = "ca"
	caValidity   = 10 * 365 * 24 * time.Hour
	caKeyAADText = "dcaas/v1 ca-key"
)

// Options configure Open. DataDir, Store and Sealer are required; the
// zero value of every other field means its default. The process's wiring
// (internal/datadir) fills in Store and Sealer when it opens the data
// dir's own SQLite database and file seal; this package knows only their
// interfaces.
type Options struct {
	DataDir     string
	ServerHosts []string      // names and IPs the TLS server certificate covers ("localhost" is always added)
	Passphrase  *secret.Bytes // for datadir.Open: protects the file seal's root key; nil = file permissions only
	Logger      *slog.Logger
	Reg         prometheus.Registerer
	Now         func() time.Time
	// Store is the database: the data dir's SQLite file, or e.g.
	// PostgreSQL shared by several replicas, which then share the CA,
	// tenants and keys (they must also share the root key).
	Store store.Store
	// Sealer is the root of trust: the data dir's file seal, or e.g. a
	// seal/pkcs11 Sealer (Passphrase is then unused).
	Sealer seal.Sealer
	// OwnStore and OwnSealer hand Store and Sealer to the Server: its
	// Close closes them after the KMS. Otherwise the caller keeps them.
	// Open never closes them, not even when it fails.
	OwnStore, OwnSealer bool
	Config              Config      // limits and TTLs; its Store, Sealer, CA, Logger, Reg are filled in by Open
	Lease               LeaseConfig // the replica's liveness lease in the store (lease.go)
	// Beside opens the KMS for a command's short use (dcaas seal init and
	// seal split issue a certificate) that may run beside the KMS serving
	// the data dir: the store is not claimed (store.SoleWriter), so the
	// serving KMS is not refused, and nothing is cached (readcache.go).
	Beside bool
}

// Server is an opened data dir: the KMS, its TLS configuration and the
// dependencies it owns.
type Server struct {
	KMS       *KMS
	TLSConfig *tls.Config
	Store     store.Store
	Sealer    seal.Sealer
	DataDir   string
	// Initialized is true when this Open created the CA: the store was new.
	Initialized bool

	ownStore  bool   // Options.OwnStore: Close closes Store
	ownSealer bool   // Options.OwnSealer: Close closes Sealer
	stop      func() // stops the background loops (certificates, janitor)
	lease     *lease // this replica's liveness lease, released by Close
	unclaim   func() // drops the claim on the store (store.SoleWriter), by Close
}

// Close stops the background loops (server certificate renewal, CA
// refresh, janitor, audit checkpoints), signs a last checkpoint of the
// audit log (stop serving requests first, so that it covers them all),
// closes the KMS and then the Store and Sealer it was handed
// (Options.OwnStore, Options.OwnSealer).
func (s *Server) Close() error {
	if s.stop != nil {
		s.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s.KMS.checkpointNow(ctx)
	cancel()
	s.lease.release()
	var stErr, sealerErr error
	if s.ownStore {
		stErr = s.Store.Close()
	}
	if s.unclaim != nil {
		s.unclaim() // after the store's last write
	}
	if s.ownSealer {
		sealerErr = s.Sealer.Close()
	}
	return errors.Join(s.KMS.Close(), stErr, sealerErr)
}

// Open opens (initializing on first use) a KMS over opts.Store and
// opts.Sealer with its data dir: the CA, the audit key (DIR/audit-key.pem,
// its public half) and DIR/ca.pem, and issues a fresh TLS server
// certificate (its key never touches the disk). internal/datadir.Open
// opens the data dir's own store and seal for it and writes the admin
// credentials.
func Open(ctx context.Context, opts Options) (_ *Server, err error) {
	if opts.DataDir == "" {
		return nil, errors.New("kms: a data dir is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Store == nil || opts.Sealer == nil {
		return nil, errors.New("kms: a store and a sealer are required (datadir.Open opens the data dir's own)")
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("kms: data dir: %w", err)
	}
	st, sealer := opts.Store, opts.Sealer
	// The embedded store serves one KMS process: claim it, so that a second
	// `kms serve` on the same data dir is refused rather than run beside
	// this one (readcache.go counts on it).
	unclaim := func() {}
	if sw, ok := st.(store.SoleWriter); ok && !opts.Beside {
		release, err := sw.ClaimSoleWriter()
		switch {
		case errors.Is(err, store.ErrClaimed):
			return nil, fmt.Errorf("kms: %w: the embedded SQLite store serves one KMS process; stop the other one first, or use --store postgres for replicas", err)
		case err == nil:
			unclaim = release
			opts.Config.soleWriter = true
		case !errors.Is(err, errors.ErrUnsupported):
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			unclaim()
		}
	}()
	ls, err := acquireLease(ctx, st, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			ls.release()
		}
	}()
	authority, created, err := loadCA(ctx, st, sealer, opts.Now())
	if err != nil {
		return nil, err
	}
	authority.Now = opts.Now
	auditKey, auditRaw, _, err := loadAuditKey(ctx, st, sealer, opts.Now)
	if err != nil {
		return nil, err
	}
	anchor, err := loadAuditAnchor(ctx, st, sealer, auditKey)
	if err != nil {
		return nil, err
	}
	// The public key a verifier of the audit log needs (the first, even
	// after rotations), from a key this KMS unsealed (not from the
	// database, which a verifier must not have to trust), rewritten at
	// every start.
	if err := atomicfile.Write(filepath.Join(opts.DataDir, AuditKeyFile), anchor.PEM(), 0o644); err != nil {
		return nil, err
	}
	cfg := opts.Config
	cfg.Store, cfg.Sealer, cfg.CA, cfg.AuditKey, cfg.AuditAnchor, cfg.Logger, cfg.Reg, cfg.Now = st, sealer, authority, auditKey, anchor, opts.Logger, opts.Reg, opts.Now
	k, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := k.akeys.loaded(k.audit, auditRaw); err != nil {
		return nil, err
	}
	k.checkpointFile = filepath.Join(opts.DataDir, AuditCheckpointFile)
	if _, err := k.refreshCA(ctx); err != nil {
		return nil, err
	}
	// The trust bundle, rewritten at every start and on every CA change.
	k.caFile = filepath.Join(opts.DataDir, CAFile)
	if err := atomicfile.Write(k.caFile, []byte(k.authority().BundlePEM()), 0o644); err != nil {
		return nil, err
	}
	tlsCfg, err := k.serverTLS(ctx, opts.ServerHosts)
	if err != nil {
		return nil, err
	}
	// A checkpoint at start: a log that lost records since the last one
	// this data dir holds shows at once (dcaas audit verify).
	k.checkpointNow(ctx)
	stopCerts := k.startCertLoop()
	stopJanitor := k.startJanitor()
	stopCheckpoints := k.startCheckpointLoop()
	return &Server{KMS: k, TLSConfig: tlsCfg, Store: st, Sealer: sealer, DataDir: opts.DataDir, Initialized: created,
		ownStore: opts.OwnStore, ownSealer: opts.OwnSealer, lease: ls, unclaim: unclaim, stop: func() { stopCerts(); stopJanitor(); stopCheckpoints() }}, nil
}

// CheckSealer reports whether what st holds was sealed under sealer's root
// key: nil when st holds no CA yet (a new store) or its first CA's key
// opens, otherwise the error Open would fail with. It writes nothing, so a
// root key just made for a data dir can be checked (and thrown away on
// refusal) before anything is sealed under it.
func CheckSealer(ctx context.Context, st store.Store, sealer seal.Sealer) error {
	rec, err := getCARecord(ctx, st, 1)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = openCAKey(ctx, sealer, 1, rec)
	return err
}

// loadCA returns the first CA (record 1) stored in st, creating it on
// first use. Two replicas initializing at once agree on the winner's CA.
// The rotation steps stored after it are applied by KMS.refreshCA.
func loadCA(ctx context.Context, st store.Store, sealer seal.Sealer, now time.Time) (*ca.CA, bool, error) {
	created := false
	rec, err := getCARecord(ctx, st, 1)
	if errors.Is(err, store.ErrNotFound) {
		raw, gerr := newCARecord(ctx, sealer, 1, now)
		if gerr != nil {
			return nil, false, gerr
		}
		stored, perr := st.PutSettingIfAbsent(ctx, caSetting, raw)
		if perr != nil {
			return nil, false, perr
		}
		created = string(stored) == string(raw)
		rec, err = getCARecord(ctx, st, 1)
	}
	if err != nil {
		return nil, false, err
	}
	key, err := openCAKey(ctx, sealer, 1, rec)
	if err != nil {
		return nil, false, err
	}
	authority, err := ca.New(rec.CertDER, key)
	return authority, created, err
}
