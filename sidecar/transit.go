package sidecar

import (
	"net/http"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/keyring"
	"github.com/dcaas/dcaas/internal/transit"
)

// adapterRoutes mounts the APIs of other protocols next to dcaas's own:
// key names and the Vault/OpenBao transit API (docs/transit.md).
func (s *Sidecar) adapterRoutes() {
	s.keyNameRoutes()
	ts := &transit.Server{Engine: s.engine, Keys: transitKeys{s}, BodyLimit: bodyLimit, BatchBodyLimit: batchBodyLimit, Log: s.log}
	for _, rt := range ts.Routes() {
		s.router.HandleFunc(rt.Pattern, s.transitAuth(rt.Name, rt.Handler))
	}
	s.router.Fallback("/v1/transit/", func(w http.ResponseWriter, r *http.Request, methodNotAllowed bool) {
		s.transitAuth("transit.unsupported", func(w http.ResponseWriter, r *http.Request) {
			transit.NotFound(w, r, methodNotAllowed)
		})(w, r)
	})
}

// transitAuth puts h behind the sidecar's own binding, exactly as the
// native API: the peer's uid on the socket, the client certificate's DN
// over mTLS. Transit's token header (X-Vault-Token) is ignored. Refusals
// are audited and answered in transit's shape.
func (s *Sidecar) transitAuth(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r); err != nil {
			s.audit.Record(callerName(r), name, "", "denied", string(api.CodeOf(err)))
			transit.WriteError(w, err)
			return
		}
		if s.revoked.Load() {
			transit.WriteError(w, errRevoked)
			return
		}
		h(w, r)
	}
}

// transitKeys resolves transit names to loaded keys.
type transitKeys struct{ s *Sidecar }

func (k transitKeys) Resolve(name string) string { return k.s.ResolveKeyName(name) }

func (k transitKeys) Versions(keyID string) []api.LoadedKey { return k.s.keyVersions(keyID) }

func (k transitKeys) Absent(keyID string) error {
	if k.s.ring.Revoked(keyID) {
		return keyring.RevokedKeyError(keyID)
	}
	return api.Errorf(api.CodeNotFound, "Key %s is not loaded in this sidecar.", keyID)
}
