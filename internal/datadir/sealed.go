package datadir

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/atomicfile"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// The sealed listener's TLS identity. A share-sealed data dir keeps its CA
// key sealed in the store like any other, so a sealed KMS cannot issue
// itself a server certificate: `dcaas seal init`, and every unseal after
// it, issue one from the CA (registered and audited like the KMS's own)
// and write it here, for the next sealed start only. Once unsealed, the
// KMS serves with its usual fresh in-memory certificate. Whoever can read
// the data dir can impersonate a sealed KMS with this key and so collect
// shares posted to it: protect the data dir as the root key it holds.
const (
	UnsealCertFile = "unseal/cert.pem"
	UnsealKeyFile  = "unseal/key.pem"
)

// ShareSealed reports whether dir's root key is split into unseal key
// shares (`dcaas seal init`), and the share set.
func ShareSealed(dir string) (file.ShareSet, bool, error) {
	return file.SharesOf(dir)
}

// Init initializes a share-sealed data dir, exactly as a first start of
// Open would but with root.key split into n shares (threshold k): the
// root key, the store (opts.Store, else DIR/kms.db), the CA, the audit
// key, the admin credentials, and the sealed listener's certificate for
// opts.ServerHosts. It returns the share set and the n share files'
// contents (the caller writes them out). It refuses a data dir that
// already has a root.key, and removes what it made when it fails.
func Init(ctx context.Context, opts kms.Options, n, k int) (_ file.ShareSet, shares [][]byte, err error) {
	if opts.DataDir == "" {
		return file.ShareSet{}, nil, errors.New("kms: a data dir is required")
	}
	if opts.Sealer != nil {
		return file.ShareSet{}, nil, errors.New("kms: a share-sealed data dir uses its own root key, not another sealer")
	}
	if _, serr := os.Lstat(filepath.Join(opts.DataDir, kms.RootKeyFile)); serr == nil {
		return file.ShareSet{}, nil, fmt.Errorf("kms: %s already has a %s: initialize a new data dir", opts.DataDir, kms.RootKeyFile)
	}
	before, err := snapshot(opts.DataDir)
	if err != nil {
		return file.ShareSet{}, nil, fmt.Errorf("kms: data dir: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := removeNew(opts.DataDir, before); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	sl, set, files, err := file.InitShares(opts.DataDir, n, k)
	if err != nil {
		return file.ShareSet{}, nil, err
	}
	opts.Sealer, opts.OwnSealer = sl, true
	if opts.Store == nil {
		db, err := sqlstore.OpenSQLite(ctx, filepath.Join(opts.DataDir, kms.DBFile))
		if err != nil {
			sl.Close()
			return file.ShareSet{}, nil, err
		}
		opts.Store, opts.OwnStore = db, true
	}
	if err := kms.CheckSealer(ctx, opts.Store, opts.Sealer); err != nil {
		if opts.OwnStore {
			opts.Store.Close()
		}
		sl.Close()
		return file.ShareSet{}, nil, fmt.Errorf("kms: the store was initialized under another root key; a share-sealed data dir needs a new store (or copy root.key from a replica): %w", err)
	}
	opts.Beside = true // a command, maybe beside a serving KMS
	srv, err := Open(ctx, opts)
	if err != nil {
		if opts.OwnStore {
			opts.Store.Close()
		}
		sl.Close()
		return file.ShareSet{}, nil, err
	}
	defer srv.Close()
	if err := writeUnsealCert(ctx, srv.KMS, opts.DataDir, opts.ServerHosts); err != nil {
		return file.ShareSet{}, nil, err
	}
	return set, files, nil
}

// Split moves a file-sealed data dir's root key from its passphrase
// (opts.Passphrase, or none) to n unseal key shares with threshold k
// (file.Split, which hands write the share files). First it opens the KMS
// over the data dir as it is (opts.Store, else DIR/kms.db) to issue the
// sealed listener's certificate for opts.ServerHosts, which every
// share-sealed start serves and which only the unsealed CA can issue. It
// refuses a data dir without a root.key (Open would make one) or with one
// split already. A failure after the certificate was written leaves
// root.key as it was (the certificate is then unused).
func Split(ctx context.Context, opts kms.Options, n, k int, write func(file.ShareSet, [][]byte) error) (file.ShareSet, error) {
	if opts.DataDir == "" {
		return file.ShareSet{}, errors.New("kms: a data dir is required")
	}
	if opts.Sealer != nil {
		return file.ShareSet{}, errors.New("kms: only the file seal's root key can be split into shares")
	}
	if _, err := os.Lstat(filepath.Join(opts.DataDir, kms.RootKeyFile)); err != nil {
		return file.ShareSet{}, fmt.Errorf("kms: %s has no %s to split: %w", opts.DataDir, kms.RootKeyFile, err)
	}
	if _, ok, err := file.SharesOf(opts.DataDir); err != nil {
		return file.ShareSet{}, err
	} else if ok {
		return file.ShareSet{}, fmt.Errorf("kms: %w: %s is split already (dcaas seal rekey changes the split)", file.ErrSharesRequired, kms.RootKeyFile)
	}
	opts.Beside = true // the serving KMS may run on (dcaas seal split)
	srv, err := Open(ctx, opts)
	if err != nil {
		return file.ShareSet{}, err
	}
	err = writeUnsealCert(ctx, srv.KMS, opts.DataDir, opts.ServerHosts)
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return file.ShareSet{}, fmt.Errorf("kms: the sealed listener's certificate: %w", err)
	}
	return file.Split(opts.DataDir, opts.Passphrase, n, k, write)
}

// writeUnsealCert issues and writes the sealed listener's certificate.
func writeUnsealCert(ctx context.Context, k *kms.KMS, dir string, hosts []string) error {
	certPEM, keyPEM, err := k.IssueUnsealCert(ctx, hosts)
	if err != nil {
		return err
	}
	defer secret.Zero(keyPEM)
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(UnsealKeyFile)), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, UnsealKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, UnsealCertFile), certPEM, 0o644)
}

// Sealed serves a share-sealed data dir until it is unsealed: the TLS
// listener with the sealed certificate, GET /healthz (200, status
// "sealed"), GET /readyz (503), GET /v1/sys/seal-status and POST
// /v1/sys/unseal (admin certificate); everything else is 503 "sealed".
// When the threshold of distinct shares is posted it opens the root key
// and the KMS in-process (Open) and hands it every request. It is safe
// for concurrent use.
type Sealed struct {
	opts   kms.Options
	set    file.ShareSet
	roots  *x509.CertPool
	cert   *tls.Certificate
	log    *slog.Logger
	gauge  prometheus.Gauge
	ready  chan struct{} // closed once unsealed
	srv    atomic.Pointer[kms.Server]
	sealed tls.Config

	mu     sync.Mutex // serializes unseal attempts
	posted []file.UnsealShare
	stop   chan struct{} // stops the renewal of the sealed certificate
}

// OpenSealed prepares the sealed gate of a share-sealed data dir. opts
// are what Open gets once the root key is open; opts.Store, when nil, is
// opened now (DIR/kms.db) to check admin certificates, and handed to the
// KMS. Close releases it all.
func OpenSealed(ctx context.Context, opts kms.Options) (*Sealed, error) {
	set, ok, err := file.SharesOf(opts.DataDir)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("kms: %s/%s is not split into unseal key shares", opts.DataDir, kms.RootKeyFile)
	}
	if opts.Sealer != nil || opts.Passphrase.Len() > 0 {
		return nil, errors.New("kms: the root key of this data dir is split into unseal key shares: no passphrase or other seal applies")
	}
	bundle, err := os.ReadFile(filepath.Join(opts.DataDir, kms.CAFile))
	if err != nil {
		return nil, fmt.Errorf("kms: a share-sealed data dir needs its CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return nil, fmt.Errorf("kms: %s holds no certificate", kms.CAFile)
	}
	keyPEM, err := os.ReadFile(filepath.Join(opts.DataDir, UnsealKeyFile))
	if err != nil {
		return nil, fmt.Errorf("kms: the sealed listener's key (made by dcaas seal init and at each unseal): %w", err)
	}
	defer secret.Zero(keyPEM)
	certPEM, err := os.ReadFile(filepath.Join(opts.DataDir, UnsealCertFile))
	if err != nil {
		return nil, fmt.Errorf("kms: the sealed listener's certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("kms: the sealed listener's certificate and key: %w", err)
	}
	if opts.Store == nil {
		db, err := sqlstore.OpenSQLite(ctx, filepath.Join(opts.DataDir, kms.DBFile))
		if err != nil {
			return nil, err
		}
		opts.Store, opts.OwnStore = db, true
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Sealed{opts: opts, set: set, roots: roots, cert: &pair, log: opts.Logger, ready: make(chan struct{}), stop: make(chan struct{})}
	s.sealed = tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert, Certificates: []tls.Certificate{pair}}
	s.gauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "dcaas_kms_sealed",
		Help: "1 while this KMS process waits for unseal key shares, 0 once unsealed."})
	s.gauge.Set(1)
	if opts.Reg != nil {
		if err := opts.Reg.Register(s.gauge); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Set is the share set this data dir's root key is split into.
func (s *Sealed) Set() file.ShareSet { return s.set }

// Server is the KMS once unsealed, else nil.
func (s *Sealed) Server() *kms.Server { return s.srv.Load() }

// Unsealed is closed once the KMS is open.
func (s *Sealed) Unsealed() <-chan struct{} { return s.ready }

// TLSConfig serves the sealed certificate until unsealed, then the KMS's.
func (s *Sealed) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if srv := s.srv.Load(); srv != nil {
				return srv.TLSConfig, nil
			}
			return &s.sealed, nil
		},
	}
}

// Close closes the KMS if it was unsealed, else what OpenSealed opened.
func (s *Sealed) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wipePosted()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	if srv := s.srv.Load(); srv != nil {
		return srv.Close()
	}
	if s.opts.OwnStore {
		return s.opts.Store.Close()
	}
	return nil
}

func (s *Sealed) wipePosted() {
	for _, p := range s.posted {
		p.Value.Wipe()
	}
	s.posted = nil
}

// status is the seal status now; the caller holds mu or accepts a race.
func (s *Sealed) status() api.SealStatus {
	st := api.SealStatus{Sealed: true, ShareSet: s.set.IDString(), Threshold: s.set.Threshold, Shares: s.set.Shares, Progress: len(s.posted)}
	for _, p := range s.posted {
		st.Posted = append(st.Posted, p.Index)
	}
	slices.Sort(st.Posted)
	return st
}

var errSealed = api.Errorf(api.CodeSealed, "The KMS is sealed: its root key opens only when enough unseal key shares are posted (dcaas kms unseal, POST /v1/sys/unseal); see GET /v1/sys/seal-status.")

// Handler answers while sealed and passes every request to the KMS once
// it is open.
func (s *Sealed) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, s.health())
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, s.health())
	})
	mux.HandleFunc("GET /v1/sys/seal-status", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		st := s.status()
		s.mu.Unlock()
		httpapi.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /v1/sys/unseal", s.unseal)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, s.log, r, errSealed)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if srv := s.srv.Load(); srv != nil {
			srv.KMS.Handler().ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Sealed) health() api.Health {
	return api.Health{Status: "sealed", FIPS: kcrypto.FIPS(), Seal: "shares", Failed: []string{"sealed"},
		Checks: []api.HealthCheck{{Name: "sealed", OK: false, Error: "the root key waits for unseal key shares (GET /v1/sys/seal-status)"}}}
}

// unseal takes one share. Refusals: not an admin (401/403), a damaged
// share file or a share of another set (400), a share already posted
// (409), and a complete set that does not open the root key (400, the
// posted shares are dropped: which one was wrong is not known).
func (s *Sealed) unseal(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	dn, err := kms.AuthenticateAdmin(ctx, s.opts.Store, s.roots, r, time.Now())
	if err != nil {
		httpapi.WriteError(w, s.log, r, err)
		return
	}
	var req api.UnsealRequest
	if err := httpapi.Decode(w, r, 16<<10, &req); err != nil {
		httpapi.WriteError(w, s.log, r, err)
		return
	}
	sh, err := file.ParseShare([]byte(req.Share))
	req.Share = ""
	switch {
	case errors.Is(err, file.ErrShareChecksum):
		httpapi.WriteError(w, s.log, r, api.Errorf(api.CodeInvalidArgument, "The share's checksum does not match: the share file is damaged or was mistyped. Nothing was counted."))
		return
	case err != nil:
		httpapi.WriteError(w, s.log, r, api.Errorf(api.CodeInvalidArgument, "This is not an unseal key share file: %s. Nothing was counted.", trimPrefix(err)))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if srv := s.srv.Load(); srv != nil {
		sh.Value.Wipe()
		httpapi.WriteJSON(w, http.StatusOK, srv.KMS.SealStatus())
		return
	}
	if now, ok, err := file.SharesOf(s.opts.DataDir); err == nil && ok && now.ID != s.set.ID {
		// dcaas seal rekey ran since this KMS started sealed: neither the
		// old shares nor the new ones can open it until it restarts.
		sh.Value.Wipe()
		s.wipePosted()
		s.log.Warn("root.key was split into a new share set since the KMS started: restart it", "started_with", s.set.IDString(), "root_key", now.IDString())
		httpapi.WriteError(w, s.log, r, api.Errorf(api.CodeInvalidArgument, "root.key was split into share set %s (dcaas seal rekey) after this KMS started sealed with share set %s: restart the KMS, then post shares of set %s. Nothing was counted.", now.IDString(), s.set.IDString(), now.IDString()))
		return
	}
	if sh.Set.ID != s.set.ID {
		sh.Value.Wipe()
		httpapi.WriteError(w, s.log, r, api.Errorf(api.CodeInvalidArgument, "This share belongs to share set %s; this KMS's root key is split into share set %s. Nothing was counted.", sh.Set.IDString(), s.set.IDString()))
		return
	}
	if sh.Set != s.set {
		sh.Value.Wipe()
		httpapi.WriteError(w, s.log, r, api.Errorf(api.CodeInvalidArgument, "This share names share set %s with other share counts than the root key's. Nothing was counted.", s.set.IDString()))
		return
	}
	for _, p := range s.posted {
		if p.Index == sh.Index {
			sh.Value.Wipe()
			httpapi.WriteError(w, s.log, r, api.Errorf(api.CodeConflict, "Share %d was already posted; %d of %d shares are in.", sh.Index, len(s.posted), s.set.Threshold))
			return
		}
	}
	s.posted = append(s.posted, sh)
	s.log.Info("unseal key share posted", "share", sh.Index, "share_set", s.set.IDString(), "progress", len(s.posted), "threshold", s.set.Threshold, "by", dn)
	if len(s.posted) < s.set.Threshold {
		httpapi.WriteJSON(w, http.StatusOK, s.status())
		return
	}
	srv, err := s.open(context.WithoutCancel(ctx), dn)
	s.wipePosted()
	if errors.Is(err, file.ErrUnsealKey) {
		s.log.Warn("unseal key shares do not open the root key: progress reset", "share_set", s.set.IDString(), "by", dn)
		httpapi.WriteError(w, s.log, r, api.Errorf(api.CodeInvalidArgument, "The %d shares posted do not open the root key: at least one of them is not a share of this key. Progress was reset; post the shares again.", s.set.Threshold))
		return
	}
	if err != nil {
		s.log.Error("unseal: the root key opened but the KMS did not start; progress reset", "err", err)
		httpapi.WriteError(w, s.log, r, api.Errorf(api.CodeUnavailable, "The shares opened the root key but the KMS could not start (see its log); progress was reset, post the shares again once that is fixed."))
		return
	}
	s.srv.Store(srv)
	s.gauge.Set(0)
	close(s.ready)
	go s.renewUnsealCert(srv)
	httpapi.WriteJSON(w, http.StatusOK, srv.KMS.SealStatus())
}

// open opens the root key with the posted shares and the KMS over it,
// audits the unseal and renews the sealed listener's certificate.
func (s *Sealed) open(ctx context.Context, dn string) (*kms.Server, error) {
	sl, err := file.OpenShares(s.opts.DataDir, s.posted)
	if err != nil {
		return nil, err
	}
	opts := s.opts
	opts.Sealer, opts.OwnSealer = sl, true
	if opts.Reg != nil {
		// An attempt that failed after the KMS registered its metrics
		// must not make the next one panic on them.
		opts.Reg = replacing{opts.Reg}
	}
	srv, err := Open(ctx, opts)
	if err != nil {
		sl.Close()
		return nil, err
	}
	srv.KMS.SetShareSet(api.SealStatus{ShareSet: s.set.IDString(), Threshold: s.set.Threshold, Shares: s.set.Shares})
	if err := srv.KMS.RecordUnseal(ctx, dn, s.set.IDString()); err != nil {
		srv.Close()
		return nil, fmt.Errorf("auditing the unseal: %w", err)
	}
	if err := writeUnsealCert(ctx, srv.KMS, s.opts.DataDir, s.opts.ServerHosts); err != nil {
		// The KMS is up; the previous sealed certificate stays for the
		// next start.
		s.log.Warn("could not renew the sealed listener's certificate", "err", err)
	}
	return srv, nil
}

// renewUnsealCert renews the sealed listener's certificate at a third of
// its lifetime while the KMS runs, so that a KMS that ran longer than the
// certificate lives still starts sealed with a valid one.
func (s *Sealed) renewUnsealCert(srv *kms.Server) {
	ttl := s.opts.Config.ServerCertTTL
	if ttl <= 0 {
		ttl = 90 * 24 * time.Hour // kms.Config's default
	}
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := writeUnsealCert(ctx, srv.KMS, s.opts.DataDir, s.opts.ServerHosts); err != nil {
				s.log.Warn("could not renew the sealed listener's certificate; retrying at the next round", "err", err)
			}
			cancel()
		}
	}
}

// replacing is a Registerer on which a collector of an earlier, failed
// unseal attempt is replaced instead of refused.
type replacing struct{ prometheus.Registerer }

func (r replacing) Register(c prometheus.Collector) error {
	err := r.Registerer.Register(c)
	var dup prometheus.AlreadyRegisteredError
	if errors.As(err, &dup) {
		r.Registerer.Unregister(dup.ExistingCollector)
		return r.Registerer.Register(c)
	}
	return err
}

func (r replacing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// trimPrefix drops the "seal/file: " prefix of a share parse error.
func trimPrefix(err error) string {
	msg := err.Error()
	const p = "seal/file: "
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}
