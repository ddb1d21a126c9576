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
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// Files a data dir holds.
const (
	DBFile       = "kms.db"
	CAFile       = "ca.pem"
	AdminCert    = "admin/cert.pem"
	AdminKey     = "admin/key.pem"
	caSetting    = "ca"
	caValidity   = 10 * 365 * 24 * time.Hour
	caKeyAADText = "dcaas/v1 ca-key"
)

// Options configure Open. The zero value of every field but DataDir means
// its default.
type Options struct {
	DataDir     string
	ServerHosts []string      // names and IPs the TLS server certificate covers ("localhost" is always added)
	Passphrase  *secret.Bytes // protects the file seal's root key; nil = file permissions only
	Logger      *slog.Logger
	Reg         prometheus.Registerer
	Now         func() time.Time
	// Store, when set, is the database to use instead of DataDir/kms.db:
	// e.g. PostgreSQL shared by several replicas, which then share the CA,
	// tenants and keys (they must also share the root key). The caller
	// keeps it: Server.Close does not close it.
	Store store.Store
	// Sealer, when set, is the root of trust to use instead of the file
	// seal in DataDir (Passphrase is then unused): e.g. a seal/pkcs11
	// Sealer. The caller keeps it: Server.Close does not close it.
	Sealer seal.Sealer
	Config Config      // limits and TTLs; its Store, Sealer, CA, Logger, Reg are filled in by Open
	Lease  LeaseConfig // the replica's liveness lease in the store (lease.go)
}

// Server is an opened data dir: the KMS, its TLS configuration and the
// dependencies it owns.
type Server struct {
	KMS       *KMS
	TLSConfig *tls.Config
	Store     store.Store
	Sealer    seal.Sealer
	DataDir   string
	// Initialized is true when this Open created the data dir's material.
	Initialized bool

	ownStore  bool   // Open opened Store (not Options.Store), so Close closes it
	ownSealer bool   // Open opened Sealer (not Options.Sealer), so Close closes it
	stop      func() // stops the background loops (certificates, janitor)
	lease     *lease // this replica's liveness lease, released by Close
}

// Close stops the background loops (server certificate renewal, CA
// refresh, janitor, audit checkpoints), signs a last checkpoint of the
// audit log (stop serving requests first, so that it covers them all),
// closes the KMS and then what it was built on (but not an Options.Store
// or Options.Sealer).
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
	if s.ownSealer {
		sealerErr = s.Sealer.Close()
	}
	return errors.Join(s.KMS.Close(), stErr, sealerErr)
}

// Open opens (initializing on first use) a KMS data dir: the sealed root
// key, the database, the CA, the audit key (DIR/audit-key.pem, its public
// half), DIR/ca.pem and the admin credentials, and issues a fresh TLS
// server certificate (its key never touches the disk).
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
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "admin"), 0o700); err != nil {
		return nil, fmt.Errorf("kms: data dir: %w", err)
	}
	sealer, ownSealer := opts.Sealer, opts.Sealer == nil
	if ownSealer {
		var fs *file.Sealer
		if fs, err = file.Open(opts.DataDir, opts.Passphrase); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				fs.Close()
			}
		}()
		sealer = fs
	}
	st, ownStore := opts.Store, opts.Store == nil
	if ownStore {
		var db *sqlstore.DB
		if db, err = sqlstore.OpenSQLite(ctx, filepath.Join(opts.DataDir, DBFile)); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				db.Close()
			}
		}()
		st = db
	}
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
	auditKey, _, err := loadAuditKey(ctx, st, sealer, opts.Now)
	if err != nil {
		return nil, err
	}
	// The public key a verifier of the audit log needs, from the key this
	// KMS unsealed (not from the database, which a verifier must not
	// have to trust), rewritten at every start.
	if err := atomicfile.Write(filepath.Join(opts.DataDir, AuditKeyFile), auditKey.Public().PEM(), 0o644); err != nil {
		return nil, err
	}
	cfg := opts.Config
	cfg.Store, cfg.Sealer, cfg.CA, cfg.AuditKey, cfg.Logger, cfg.Reg, cfg.Now = st, sealer, authority, auditKey, opts.Logger, opts.Reg, opts.Now
	k, err := New(cfg)
	if err != nil {
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
	if err := ensureAdmin(ctx, k, opts.DataDir); err != nil {
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
		ownStore: ownStore, ownSealer: ownSealer, lease: ls, stop: func() { stopCerts(); stopJanitor(); stopCheckpoints() }}, nil
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

// ensureAdmin writes admin credentials into the data dir the first time.
func ensureAdmin(ctx context.Context, k *KMS, dir string) error {
	certPath := filepath.Join(dir, AdminCert)
	if _, err := os.Stat(certPath); err == nil {
		return nil
	}
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		return err
	}
	keyPEM, err := kcrypto.MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	defer secret.Zero(keyPEM)
	der, err := k.IssueAdmin(ctx, key.Public())
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, AdminKey), keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(certPath, []byte(pemCert(der)), 0o644)
}
