// Package console is the admin web console of a dcaas KMS (`dcaas
// console`): server-rendered pages (html/template, no JavaScript) for the
// tenants and their master keys, the apps and their certificates, the
// data keys, the fleet of sidecar instances, the audit trail with its
// chain verification, and charts of the KMS's request counters.
//
// The console talks to the KMS only through the public SDK (client.KMS)
// with the certificate it was started with, normally the admin's. The
// browser never sees that certificate: it holds a session cookie
// (HttpOnly, SameSite=Strict, Secure on TLS) that a one-time login URL
// starts (LoginURL), and every state-changing request carries the
// session's CSRF token. Start with New, then serve Handler and run Run.
package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

// Config configures a Console. Its zero value, with KMS set, means the
// defaults.
type Config struct {
	// KMS is the client the console calls the KMS with (required). Its
	// certificate decides what the console can do: an admin's sees and
	// does everything the pages offer.
	KMS *client.KMS
	// AuditKey is the audit key's public key the operator pinned
	// (`dcaas audit key`). The zero value: the console fetches it from
	// the KMS and says that the key is not pinned.
	AuditKey kcrypto.LogVerifyKey
	// TLS is whether the console is served over HTTPS: the session
	// cookie is then marked Secure.
	TLS bool
	// SessionTTL is how long a session lasts (default 8 h).
	SessionTTL time.Duration
	// SampleEvery is how often Run samples the KMS's /metrics (default
	// 10 s); the charts show the last hour.
	SampleEvery time.Duration
	// Lease is the sidecars' --lease (default 24 h), to estimate when a
	// sidecar that stopped polling runs out of its keys' leases.
	Lease time.Duration
	// Now and Rand default to time.Now and crypto/rand.
	Now    func() time.Time
	Rand   io.Reader
	Logger *slog.Logger
}

// Console is the web console. Its methods are safe for concurrent use.
type Console struct {
	cfg   Config
	kms   *client.KMS
	tmpl  map[string]*template.Template
	log   *slog.Logger
	mux   *http.ServeMux
	audit auditFollower

	mu       sync.Mutex
	login    []byte              // SHA-256 of the one-time login token; nil once used
	sessions map[string]*session // by SHA-256 of the cookie value

	samples samples
}

// New returns a console for cfg and the token of its one-time login URL
// (see LoginURL).
func New(cfg Config) (*Console, string, error) {
	if cfg.KMS == nil {
		return nil, "", errors.New("console: Config.KMS is required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 10 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, "", err
	}
	c := &Console{
		cfg: cfg, kms: cfg.KMS, tmpl: tmpl, log: cfg.Logger,
		sessions: map[string]*session{},
		audit:    auditFollower{kms: cfg.KMS, pinned: cfg.AuditKey, keep: keepRecords},
	}
	c.samples.max = int(time.Hour/cfg.SampleEvery) + 1
	token, err := c.randomToken()
	if err != nil {
		return nil, "", err
	}
	c.login = digest(token)
	c.routes()
	return c, token, nil
}

// LoginURL is the one-time URL that starts a session: base is the
// console's own address ("http://127.0.0.1:8080"). It works once.
func LoginURL(base, token string) string { return base + "/login?token=" + token }

func (c *Console) randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(c.cfg.Rand, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Run samples the KMS's metrics every Config.SampleEvery until ctx ends.
func (c *Console) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.SampleEvery)
	defer t.Stop()
	for {
		c.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
