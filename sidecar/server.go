package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/dcaas/dcaas/internal/ca"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/buildinfo"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/peer"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/secret"
)

// Body limits of the local API.
const (
	bodyLimit      = 1 << 20
	batchBodyLimit = 64 << 20
)

// Handler is the sidecar's REST API (docs/api.md "Sidecar" and "Operations").
// It authorizes every request by how it arrived: over a listener from
// ListenUnix the peer's uid must be allowed; over TLS the client
// certificate must carry the bound custodian's DN. Serve wires both.
func (s *Sidecar) Handler() http.Handler { return s.router }

// Serve answers requests on ln until ctx ends; then it stops accepting
// (closing ln) and waits at most Config.ShutdownTimeout for the requests in
// flight, returning an error if it had to cut some. A Unix listener is bound by
// peer credentials; any other listener must be wrapped with TLSListener.
func (s *Sidecar) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.router,
		ReadHeaderTimeout: 10 * time.Second,
		// A whole request, body included (64 MiB batches arrive in well
		// under a second locally): a slow body cannot hold a connection
		// and its handler for ever.
		ReadTimeout: 60 * time.Second,
		IdleTimeout: 120 * time.Second,
		ConnContext: peer.ConnContext,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		// Shutdown closes ln first (a ListenUnix socket file goes with
		// it), then waits for the requests in flight.
		sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout())
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close()
			return fmt.Errorf("sidecar: requests still in flight after %v were cut: %w", s.shutdownTimeout(), err)
		}
		return nil
	}
}

// defaultShutdownTimeout is Config.ShutdownTimeout's default.
const defaultShutdownTimeout = 10 * time.Second

func (s *Sidecar) shutdownTimeout() time.Duration {
	if s.cfg.ShutdownTimeout > 0 {
		return s.cfg.ShutdownTimeout
	}
	return defaultShutdownTimeout
}

// ListenUnix creates the sidecar's Unix socket with mode 0600.
func ListenUnix(path string) (net.Listener, error) { return peer.ListenUnix(path, 0o600) }

// ListenUnixMode creates the socket with another mode, e.g. 0660 so that
// an application running as another user of the socket's group can
// connect. The per-connection uid check (Config.AllowUIDs) still decides
// who is served; the mode only decides who may try.
func ListenUnixMode(path string, mode os.FileMode) (net.Listener, error) {
	if mode&0o007 != 0 {
		return nil, fmt.Errorf("sidecar: socket mode %#o would let every user connect; use at most 0660", mode)
	}
	return peer.ListenUnix(path, mode)
}

// TLSListener wraps ln in mutual TLS: the sidecar presents its identity
// certificate (the current one: renewals apply to new connections at
// once), and clients must present a certificate from the KMS CA (whose DN
// is then checked against the bound custodian on every request). It may
// be called before enrollment; handshakes fail until the sidecar has a
// certificate.
func (s *Sidecar) TLSListener(_ context.Context, ln net.Listener) (net.Listener, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			id := s.id.Load()
			if id == nil {
				return nil, errors.New("sidecar: not enrolled yet")
			}
			return &id.tls, nil
		},
		// Certificates are requested and verified once per connection in
		// verifyClient, so a caller without one still gets a JSON 401 and
		// a foreign one leaves an audit record.
		ClientAuth:       tls.RequestClientCert,
		VerifyConnection: s.verifyClient,
	}
	return tls.NewListener(ln, cfg), nil
}

// verifyClient checks a TLS client certificate chain against the trusted
// roots during the handshake. No certificate passes here and is refused
// per request with 401.
func (s *Sidecar) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	roots := s.caPool
	if id := s.id.Load(); id != nil {
		roots = id.pool
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: s.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		s.audit.Record(cs.PeerCertificates[0].Subject.String(), "tls.handshake", "", "denied", string(api.CodeUnauthenticated))
		return fmt.Errorf("sidecar: client certificate not issued by the KMS CA: %w", err)
	}
	if serial := ca.SerialString(cs.PeerCertificates[0]); s.certRevoked(serial) {
		s.audit.Record(cs.PeerCertificates[0].Subject.String(), "tls.handshake", "", "denied", string(api.CodeRevoked))
		return fmt.Errorf("sidecar: client certificate %s was revoked at the KMS", serial)
	}
	return nil
}

// ServerName is the TLS server name of the sidecar's mutual-TLS listener:
// clients set tls.Config.ServerName to it (the listener's certificate names
// the instance, not a host). It is "" until the sidecar is enrolled.
func (s *Sidecar) ServerName() string {
	if id := s.InstanceID(); id != "" {
		return ca.InstanceServerName(id)
	}
	return ""
}

// authorize decides whether the caller of r is the bound custodian.
func (s *Sidecar) authorize(r *http.Request) error {
	if r.TLS != nil {
		// Chains were verified in the handshake (verifyClient).
		if len(r.TLS.PeerCertificates) == 0 {
			return api.Errorf(api.CodeUnauthenticated, "This sidecar needs a client certificate from the KMS CA.")
		}
		bound := s.CustodianDN()
		dn, err := policy.NormalizeDN(r.TLS.PeerCertificates[0].Subject.String())
		if err != nil || bound == "" || dn != bound {
			return api.Errorf(api.CodeForbidden, "This sidecar serves %s only.", bound)
		}
		return nil
	}
	cred, ok := peer.FromContext(r.Context())
	if !ok {
		return api.Errorf(api.CodeUnauthenticated, "The caller's identity could not be established.")
	}
	if !slices.Contains(s.cfg.AllowUIDs, int(cred.UID)) {
		return api.Errorf(api.CodeForbidden, "Unix user %d may not use this sidecar.", cred.UID)
	}
	return nil
}

// callerName describes the caller for the local audit log.
func callerName(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0].Subject.String()
	}
	if cred, ok := peer.FromContext(r.Context()); ok {
		return "uid:" + strconv.Itoa(int(cred.UID))
	}
	return "unknown"
}

type handlerFunc func(ctx context.Context, decode func(any) error, r *http.Request) (any, error)

// handle registers h behind authorization, strict decoding and error
// rendering. Refusals are written to the local audit log; so are key
// management calls (audit true), which fail closed: the call is recorded
// before it runs, and with the keys it acted on after, and a record that
// cannot be written (a full or read-only disk) refuses the call.
// Operations are not recorded, to keep the hot path free of I/O.
func (s *Sidecar) handle(pattern, name string, limit int64, auditOK bool, h handlerFunc) {
	s.router.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r); err != nil {
			s.audit.Record(callerName(r), name, "", "denied", string(api.CodeOf(err)))
			httpapi.WriteError(w, s.log, r, err)
			return
		}
		decode := func(v any) error { return httpapi.Decode(w, r, limit, v) }
		var resp any
		var err error
		switch {
		case s.revoked.Load() && name != "status" && name != "keys.list":
			err = errRevoked // a revoked instance serves nothing
		case s.id.Load() == nil && name != "status" && name != "enroll":
			err = errNotEnrolled
		case auditOK:
			if aerr := s.audit.Append(callerName(r), name, pathKeys(r), "requested", ""); aerr != nil {
				s.log.Error("the local audit log cannot be written: refusing the call", "action", name, "err", aerr)
				err = errAuditDown
				break
			}
			resp, err = h(r.Context(), decode, r)
		default:
			resp, err = h(r.Context(), decode, r)
		}
		if auditOK && err != errAuditDown {
			outcome, code := "ok", ""
			if err != nil {
				outcome, code = "error", string(api.CodeOf(err))
			}
			if aerr := s.audit.Append(callerName(r), name, actedOn(r, resp), outcome, code); aerr != nil && err == nil {
				s.log.Error("the local audit log cannot be written after the call", "action", name, "err", aerr)
				err = api.Errorf(api.CodeUnavailable, "The sidecar's local audit log cannot be written (a full or read-only disk?), so the call is not acknowledged; it may have taken effect — check GET /v1/keys before retrying.")
				resp = nil
			}
		}
		if err != nil {
			httpapi.WriteError(w, s.log, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}

var errAuditDown = api.Errorf(api.CodeUnavailable, "The sidecar's local audit log cannot be written (a full or read-only disk?), so it refuses key management; nothing was done.")

// pathKeys is the key a request's path names, if any.
func pathKeys(r *http.Request) []string {
	if id := r.PathValue("key_id"); id != "" {
		return []string{id}
	}
	return nil
}

// actedOn lists the keys a management call acted on: those its answer
// names, or the one its path names.
func actedOn(r *http.Request, resp any) []string {
	switch v := resp.(type) {
	case api.Loaded:
		return v.Loaded
	case api.SealResponse:
		var ids []string
		for _, k := range v.Sealed {
			if len(ids) == 0 || ids[len(ids)-1] != k.KeyID {
				ids = append(ids, k.KeyID)
			}
		}
		return ids
	}
	return pathKeys(r)
}

// loading is the handler of an endpoint that loads keys (import, load,
// derive): it decodes a Req, has load load the keys, and answers with
// their ids.
func loading[Req any](load func(ctx context.Context, req *Req) ([]string, error)) handlerFunc {
	return func(ctx context.Context, decode func(any) error, _ *http.Request) (any, error) {
		var req Req
		if err := decode(&req); err != nil {
			return nil, err
		}
		ids, err := load(ctx, &req)
		if err != nil {
			return nil, err
		}
		return api.Loaded{Loaded: ids}, nil
	}
}

func (s *Sidecar) routes() {
	s.router.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, s.Health(false))
	})
	s.router.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		h := s.Health(true)
		code := http.StatusOK
		if h.Status != api.HealthOK {
			code = http.StatusServiceUnavailable
		}
		httpapi.WriteJSON(w, code, h)
	})
	s.handle("GET /v1/status", "status", 0, false, func(ctx context.Context, _ func(any) error, _ *http.Request) (any, error) {
		st := s.Status(ctx)
		return st, nil
	})
	s.handle("POST /v1/enroll", "enroll", bodyLimit, true, func(ctx context.Context, decode func(any) error, _ *http.Request) (any, error) {
		var req api.SidecarEnrollRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		if req.Token == "" {
			return nil, api.Errorf(api.CodeInvalidArgument, "token is required: a one-time enrollment token the custodian minted for this sidecar.")
		}
		tok := secret.New([]byte(req.Token))
		defer tok.Wipe()
		if err := s.Enroll(ctx, tok); err != nil {
			return nil, err
		}
		return s.Status(ctx), nil
	})
	s.handle("GET /v1/wrapping-certificate", "wrapping_certificate", 0, false, func(context.Context, func(any) error, *http.Request) (any, error) {
		return api.WrappingCertificate{CertPEM: s.WrappingCertificatePEM()}, nil
	})
	s.handle("POST /v1/keys/import", "keys.import", batchBodyLimit, true, loading(s.ImportKeys))
	s.handle("POST /v1/keys/load", "keys.load", batchBodyLimit, true, loading(func(ctx context.Context, req *api.SidecarLoadRequest) ([]string, error) {
		grant := secret.New([]byte(req.Grant))
		defer grant.Wipe()
		return s.LoadWithGrant(ctx, grant, req.EKBs, req.KeyIDs)
	}))
	s.handle("POST /v1/keys/derive", "keys.derive", batchBodyLimit, true, loading(func(ctx context.Context, req *api.SidecarDeriveRequest) ([]string, error) {
		grant := secret.New([]byte(req.Grant))
		defer grant.Wipe()
		return s.Derive(ctx, grant, req.Seeds)
	}))
	s.handle("POST /v1/keys/seal", "keys.seal", bodyLimit, true, func(ctx context.Context, decode func(any) error, _ *http.Request) (any, error) {
		var req api.SealRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		sealed, err := s.Seal(ctx, req.KeyIDs)
		if err != nil {
			return nil, err
		}
		return api.SealResponse{Sealed: sealed}, nil
	})
	s.handle("GET /v1/keys", "keys.list", 0, false, func(context.Context, func(any) error, *http.Request) (any, error) {
		return api.LoadedKeys{Keys: s.Keys()}, nil
	})
	s.handle("DELETE /v1/keys/{key_id}", "keys.evict", 0, true, func(_ context.Context, _ func(any) error, r *http.Request) (any, error) {
		id := r.PathValue("key_id")
		if !s.Evict(id) {
			if s.ring.Revoked(id) { // evicted by the KMS's revocation: say so, not "not loaded"
				return nil, api.Errorf(api.CodeRevoked, "Key %s has been revoked by the KMS and was evicted; this sidecar will not load it again.", id)
			}
			return nil, api.Errorf(api.CodeNotFound, "Key %s is not loaded.", id)
		}
		return api.Evicted{Evicted: true}, nil
	})
	for _, rt := range s.engine.Routes() {
		limit := int64(bodyLimit)
		if rt.Batch {
			limit = batchBodyLimit
		}
		serve := rt.Serve
		s.handle(rt.Pattern, rt.Name, limit, false, func(ctx context.Context, decode func(any) error, _ *http.Request) (any, error) {
			return serve(ctx, decode)
		})
	}
	s.adapterRoutes()
}

// Health is the body of GET /healthz (readyz false: liveness, always
// served) and GET /readyz (true: 503 unless ready). A sidecar is ready
// when it holds a live, unrevoked identity; whether the KMS answered its
// last call is reported (kms_reachable) but not checked, since loaded keys
// keep working without it.
func (s *Sidecar) Health(readyz bool) api.Health {
	reachable := s.reachable.Load()
	h := api.Health{FIPS: fipsMode(), KMSReachable: &reachable, Revoked: s.revoked.Load(), Version: buildinfo.Get().Version}
	c := api.HealthCheck{Name: "enrolled", OK: s.Enrolled()}
	switch {
	case c.OK:
	case h.Revoked:
		c.Error = "the KMS revoked this instance: it serves nothing"
	case s.id.Load() == nil:
		c.Error = "waiting for an enrollment token (POST /v1/enroll)"
	default:
		c.Error = "the identity certificate expired before it could be renewed: enroll again"
	}
	h.Checks = []api.HealthCheck{c}
	h.Summarize(readyz)
	return h
}

// Routes lists the sidecar's method+path patterns (for the OpenAPI spec
// test).
func (s *Sidecar) Routes() []string { return s.router.Patterns() }
