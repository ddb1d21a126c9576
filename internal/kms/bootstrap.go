package kms

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
	serverTTL    = 90 * 24 * time.Hour
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
	Config Config // limits and TTLs; its Store, Sealer, CA, Logger, Reg are filled in by Open
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

	ownStore    bool // Open opened Store (not Options.Store), so Close closes it
	ownSealer   bool // Open opened Sealer (not Options.Sealer), so Close closes it
	stopJanitor func()
}

// Close closes the KMS and then what it was built on (but not an
// Options.Store or Options.Sealer).
func (s *Server) Close() error {
	if s.stopJanitor != nil {
		s.stopJanitor()
	}
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
// key, the database, the CA, DIR/ca.pem and the admin credentials, and
// issues a fresh TLS server certificate (its key never touches the disk).
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
	authority, created, err := loadCA(ctx, st, sealer, opts.Now())
	if err != nil {
		return nil, err
	}
	authority.Now = opts.Now
	if err := atomicfile.Write(filepath.Join(opts.DataDir, CAFile), []byte(authority.CertPEM()), 0o644); err != nil {
		return nil, err
	}
	cfg := opts.Config
	cfg.Store, cfg.Sealer, cfg.CA, cfg.Logger, cfg.Reg, cfg.Now = st, sealer, authority, opts.Logger, opts.Reg, opts.Now
	k, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := ensureAdmin(ctx, k, opts.DataDir); err != nil {
		return nil, err
	}
	tlsCfg, err := k.serverTLS(ctx, opts.ServerHosts)
	if err != nil {
		return nil, err
	}
	return &Server{KMS: k, TLSConfig: tlsCfg, Store: st, Sealer: sealer, DataDir: opts.DataDir, Initialized: created,
		ownStore: ownStore, ownSealer: ownSealer, stopJanitor: k.startJanitor()}, nil
}

// caRecord is how the CA is kept in the store: its certificate and its key
// sealed under the root key. One record, so replicas can't mix halves.
type caRecord struct {
	CertDER   []byte `json:"cert_der"`
	SealedKey []byte `json:"sealed_key"`
}

// loadCA returns the CA stored in st, creating it on first use. Two
// replicas initializing at once agree on the winner's CA.
func loadCA(ctx context.Context, st store.Store, sealer seal.Sealer, now time.Time) (*ca.CA, bool, error) {
	raw, err := st.GetSetting(ctx, caSetting)
	created := false
	if errors.Is(err, store.ErrNotFound) {
		certDER, key, gerr := ca.Generate("dcaas KMS CA", now, caValidity)
		if gerr != nil {
			return nil, false, gerr
		}
		der, merr := x509.MarshalPKCS8PrivateKey(key)
		if merr != nil {
			return nil, false, merr
		}
		kb := secret.New(der)
		sealed, serr := sealer.Seal(ctx, kb, []byte(caKeyAADText))
		kb.Wipe()
		if serr != nil {
			return nil, false, serr
		}
		rec, _ := json.Marshal(caRecord{CertDER: certDER, SealedKey: sealed})
		if raw, err = st.PutSettingIfAbsent(ctx, caSetting, rec); err != nil {
			return nil, false, err
		}
		created = string(raw) == string(rec)
	} else if err != nil {
		return nil, false, err
	}
	var rec caRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, false, fmt.Errorf("kms: stored CA record: %w", err)
	}
	kb, err := sealer.Open(ctx, rec.SealedKey, []byte(caKeyAADText))
	if err != nil {
		return nil, false, fmt.Errorf("kms: the CA key does not open under this root key (the %s seal; was the data dir moved to another seal?): %w", sealer.Name(), err)
	}
	defer kb.Wipe()
	key, err := x509.ParsePKCS8PrivateKey(kb.Expose())
	if err != nil {
		return nil, false, fmt.Errorf("kms: stored CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, false, errors.New("kms: stored CA key is not a signer")
	}
	authority, err := ca.New(rec.CertDER, signer)
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

// serverTLS issues this process's TLS server certificate for hosts, with a
// key that lives only in memory, and returns the server TLS config: client
// certificates are requested, not required, and verified per request.
func (k *KMS) serverTLS(ctx context.Context, hosts []string) (*tls.Config, error) {
	key, err := kcrypto.GenerateIdentityKey()
	if err != nil {
		return nil, err
	}
	der, cert, err := k.ca.IssueServer(key.Public(), hosts, serverTTL)
	if err != nil {
		return nil, err
	}
	if err := k.registerCert(ctx, cert, store.CertServer, "", cert.Subject.CommonName); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der, k.ca.Cert().Raw}, PrivateKey: key, Leaf: cert}},
		ClientAuth:   tls.RequestClientCert,
	}, nil
}
