package kms

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/atomicfile"
	"github.com/dcaas/dcaas/internal/ca"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// The KMS CA as stored: CA records and a log of rotation steps, all in the
// store's Settings, so that replicas on one database agree.
//
//	"ca"          CA record 1, the first CA (a caRecord: certificate, sealed key)
//	"ca.N"        CA record N ≥ 2, made by a rotation's prepare step
//	"ca.state.G"  rotation step G ≥ 1: the records trusted, the one issuing
//
// Records and steps are only ever added (PutSettingIfAbsent), never
// changed, so a replica that loses a race reads the winner's value and
// nothing is overwritten. Records are numbered without gaps. The state in
// force is the last step; before the first, record 1 alone is trusted and
// issues. A retired CA's record stays in the store (its key sealed like
// every other) but no step names it again.

const caStatePrefix = "ca.state."

// Rotation steps, as stored in caState.Step.
const (
	caStepPrepare  = "prepare"
	caStepActivate = "activate"
	caStepRetire   = "retire"
)

func caRecordName(n int) string {
	if n == 1 {
		return caSetting
	}
	return caSetting + "." + strconv.Itoa(n)
}

func caStateName(gen int) string { return caStatePrefix + strconv.Itoa(gen) }

// caKeyAAD binds a sealed CA key to its record, so that a database reader
// cannot swap one CA's key for another's. Record 1 keeps the AAD it was
// first sealed with.
func caKeyAAD(n int) []byte {
	if n == 1 {
		return []byte(caKeyAADText)
	}
	return []byte(caKeyAADText + "\x00" + strconv.Itoa(n))
}

// caState is one rotation step: which CA records are trusted and which
// one issues. It holds nothing secret.
type caState struct {
	Trusted []int     `json:"trusted"` // record numbers in the trust bundle, ascending
	Issuing int       `json:"issuing"` // one of Trusted
	Step    string    `json:"step"`    // caStepPrepare, caStepActivate or caStepRetire
	At      time.Time `json:"at"`
	By      string    `json:"by"` // DN of the admin who took the step
}

var initialCAState = caState{Trusted: []int{1}, Issuing: 1}

func (s caState) validate() error {
	if len(s.Trusted) == 0 || !slices.IsSorted(s.Trusted) || len(slices.Compact(slices.Clone(s.Trusted))) != len(s.Trusted) ||
		s.Trusted[0] < 1 || !slices.Contains(s.Trusted, s.Issuing) {
		return fmt.Errorf("kms: stored CA state %+v is inconsistent", s)
	}
	return nil
}

// phase names where a rotation stands: one CA; the newer CA trusted but
// not issuing; the newer CA issuing while an older one is still trusted.
func (s caState) phase() api.CAPhase {
	switch {
	case len(s.Trusted) == 1:
		return api.CAPhaseStable
	case s.Issuing != slices.Max(s.Trusted):
		return api.CAPhasePrepared
	}
	return api.CAPhaseActivated
}

// caView is the CA a KMS works with: the rotation step it reflects and the
// authority built from it. It never changes; a refresh swaps in a new one.
type caView struct {
	gen   int // rotation steps applied; 0 before the first
	state caState
	ca    *ca.CA
}

// authority is the CA in force now. Take it once per request, so that one
// request issues and verifies with one CA.
func (k *KMS) authority() *ca.CA { return k.caView.Load().ca }

// caRecord is how a CA is kept in the store: its certificate and its key
// sealed under the root key. One record, so replicas can't mix halves.
type caRecord struct {
	CertDER   []byte `json:"cert_der"`
	SealedKey []byte `json:"sealed_key"`
}

func getCARecord(ctx context.Context, st store.Settings, n int) (caRecord, error) {
	raw, err := st.GetSetting(ctx, caRecordName(n))
	if err != nil {
		return caRecord{}, err
	}
	var rec caRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return caRecord{}, fmt.Errorf("kms: stored CA record %d: %w", n, err)
	}
	return rec, nil
}

// caRecordNames lists the stored CA records' setting names ("ca" first),
// for Reseal. Records are numbered without gaps.
func caRecordNames(ctx context.Context, st store.Settings) ([]string, error) {
	names := []string{caSetting}
	for n := 2; ; n++ {
		if _, err := st.GetSetting(ctx, caRecordName(n)); errors.Is(err, store.ErrNotFound) {
			return names, nil
		} else if err != nil {
			return nil, err
		}
		names = append(names, caRecordName(n))
	}
}

// newCARecord generates a CA valid from now and returns its record, with
// the key sealed for record number n.
func newCARecord(ctx context.Context, sealer seal.Sealer, n int, now time.Time) ([]byte, error) {
	name := "dcaas KMS CA"
	if n > 1 {
		name += " " + strconv.Itoa(n)
	}
	certDER, key, err := ca.Generate(name, now, caValidity)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	kb := secret.New(der)
	sealed, err := sealer.Seal(ctx, kb, caKeyAAD(n))
	kb.Wipe()
	if err != nil {
		return nil, err
	}
	return json.Marshal(caRecord{CertDER: certDER, SealedKey: sealed})
}

// openCAKey unseals record n's key.
func openCAKey(ctx context.Context, sealer seal.Sealer, n int, rec caRecord) (crypto.Signer, error) {
	kb, err := sealer.Open(ctx, rec.SealedKey, caKeyAAD(n))
	if err != nil {
		return nil, fmt.Errorf("kms: the CA key does not open under this root key (the %s seal; was the data dir moved to another seal?): CA %d: %w", sealer.Name(), n, err)
	}
	defer kb.Wipe()
	key, err := x509.ParsePKCS8PrivateKey(kb.Expose())
	if err != nil {
		return nil, fmt.Errorf("kms: stored key of CA %d: %w", n, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("kms: stored key of CA %d is not a signer", n)
	}
	return signer, nil
}

// buildCA makes the authority of s: the issuing record's certificate and
// key, trusting the other records' certificates too.
func (k *KMS) buildCA(ctx context.Context, s caState) (*ca.CA, error) {
	rec, err := getCARecord(ctx, k.st, s.Issuing)
	if err != nil {
		return nil, err
	}
	key, err := openCAKey(ctx, k.sealer, s.Issuing, rec)
	if err != nil {
		return nil, err
	}
	var others [][]byte
	for _, n := range s.Trusted {
		if n == s.Issuing {
			continue
		}
		o, err := getCARecord(ctx, k.st, n)
		if err != nil {
			return nil, err
		}
		others = append(others, o.CertDER)
	}
	authority, err := ca.New(rec.CertDER, key, others...)
	if err != nil {
		return nil, err
	}
	authority.Now = k.cfg.Now
	return authority, nil
}

// refreshCA applies the rotation steps stored after the one in force (by
// this replica or another) and reports whether the CA changed.
func (k *KMS) refreshCA(ctx context.Context) (bool, error) {
	k.caMu.Lock()
	defer k.caMu.Unlock()
	return k.refreshCALocked(ctx)
}

func (k *KMS) refreshCALocked(ctx context.Context) (bool, error) {
	cur := k.caView.Load()
	gen, state := cur.gen, cur.state
	for {
		raw, err := k.st.GetSetting(ctx, caStateName(gen+1))
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return false, err
		}
		var s caState
		if err := json.Unmarshal(raw, &s); err != nil {
			return false, fmt.Errorf("kms: stored CA state %d: %w", gen+1, err)
		}
		if err := s.validate(); err != nil {
			return false, err
		}
		gen, state = gen+1, s
	}
	if gen == cur.gen {
		return false, nil
	}
	authority, err := k.buildCA(ctx, state)
	if err != nil {
		return false, err
	}
	k.installCA(&caView{gen: gen, state: state, ca: authority})
	return true, nil
}

// installCA puts v in force and publishes it: the expiry metrics, the
// trust bundle file, one log line.
func (k *KMS) installCA(v *caView) {
	k.caView.Store(v)
	k.mx.publishCA(v.ca)
	k.writeBundle(v.ca)
	k.log.Info("KMS CA state applied", "step", v.state.Step, "phase", v.state.phase(), "generation", v.gen,
		"issuing_serial", ca.SerialString(v.ca.Cert()), "trusted", len(v.ca.Roots()))
}

// writeBundle writes the trust bundle to the data dir's ca.pem.
func (k *KMS) writeBundle(authority *ca.CA) {
	if k.caFile == "" {
		return
	}
	if err := atomicfile.Write(k.caFile, []byte(authority.BundlePEM()), 0o644); err != nil {
		k.log.Warn("writing the CA trust bundle failed", "file", k.caFile, "err", err)
	}
}
