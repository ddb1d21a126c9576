package sidecar

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/dcaas/dcaas/internal/atomicfile"
)

// The sidecar's mutual-TLS listener checks a caller's certificate chain,
// not the KMS's certificate registry, so a custodian certificate revoked at
// the KMS (dcaas app cert revoke) would be taken until it expires. Every
// revocation poll therefore carries the serials of the bound custodian's
// revoked, unexpired certificates (api.RevocationFeed.RevokedCertificates,
// the whole list each time); the listener refuses them from then on. The
// list is kept in DATA-DIR/revoked-certs.json, so that a restart while the
// KMS is away does not forget it.

// revokedCertsFile is where the list survives a restart.
const revokedCertsFile = "revoked-certs.json"

// revokedSet is an immutable set of certificate serials.
type revokedSet map[string]bool

// setRevokedCerts installs serials as the revoked list, storing it when it
// changed.
func (s *Sidecar) setRevokedCerts(serials []string) {
	next := revokedSet{}
	for _, sn := range serials {
		next[sn] = true
	}
	if cur := s.revokedCerts.Load(); cur != nil && maps.Equal(*cur, next) {
		return
	}
	// Stored first, then in force: a certificate the listener refuses is
	// in the file by then (what a restart, or an operator, reads).
	sorted := slices.Sorted(maps.Keys(next))
	b, err := json.Marshal(sorted)
	if err == nil {
		err = atomicfile.Write(filepath.Join(s.cfg.DataDir, revokedCertsFile), b, 0o600)
	}
	if err != nil {
		s.log.Warn("storing the revoked custodian certificates failed; a restart forgets them until the next poll", "err", err)
	}
	s.revokedCerts.Store(&next)
	if len(serials) > 0 {
		s.log.Info("the KMS lists revoked certificates of the custodian: the mutual-TLS listener refuses them", "count", len(serials))
	}
}

// loadRevokedCerts reads the list a previous run stored.
func (s *Sidecar) loadRevokedCerts() error {
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, revokedCertsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var serials []string
	if err := json.Unmarshal(b, &serials); err != nil {
		return err
	}
	set := revokedSet{}
	for _, sn := range serials {
		set[sn] = true
	}
	s.revokedCerts.Store(&set)
	return nil
}

// certRevoked reports whether the KMS listed serial as revoked.
func (s *Sidecar) certRevoked(serial string) bool {
	set := s.revokedCerts.Load()
	return set != nil && (*set)[serial]
}
