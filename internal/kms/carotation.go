package kms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/store"
)

// CA rotation: three explicit admin steps (see castate.go for how they
// are stored).
//
//	prepare   a new CA is generated and sealed; it joins the trust bundle
//	          but the current CA still issues.
//	activate  the new CA issues every new certificate (the KMS's own TLS
//	          certificate is re-issued at the next check); the old CA stays
//	          trusted, so what it issued keeps working.
//	retire    the old CA leaves the bundle: certificates that chain only to
//	          it are refused from then on.

func (k *KMS) caRoutes() {
	// Anyone may read the trust bundle, like /healthz: it is what every
	// peer of the KMS must trust. Not audited (it changes nothing and
	// reveals nothing), so anonymous readers cannot grow the audit log.
	k.router.HandleFunc("GET /v1/ca", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, caTrust(k.caView.Load()))
	})
	admin := []api.Role{api.RoleAdmin}
	for _, step := range []string{caStepPrepare, caStepActivate, caStepRetire} {
		k.handle("POST /v1/ca/"+step, "ca."+step, admin, 0, func(ctx context.Context, c *call) (any, error) {
			if err := c.decodeOptional(); err != nil {
				return nil, err
			}
			v, err := k.rotateCA(ctx, c, step)
			if err != nil {
				return nil, err
			}
			return caTrust(v), nil
		})
	}
}

// caTrust is the API view of v.
func caTrust(v *caView) api.CATrust {
	out := api.CATrust{
		BundlePEM:     v.ca.BundlePEM(),
		IssuingSerial: ca.SerialString(v.ca.Cert()),
		Phase:         v.state.phase(),
	}
	for i, r := range v.ca.Roots() {
		out.CAs = append(out.CAs, api.CACertificate{
			Serial: ca.SerialString(r), Subject: r.Subject.String(), NotBefore: r.NotBefore, NotAfter: r.NotAfter,
			Issuing: i == 0, CertPEM: pemCert(r.Raw),
		})
	}
	if v.gen > 0 {
		at := v.state.At
		out.ChangedAt = &at
	}
	return out
}

// retireDelay is how long after activate the retire step is refused:
// replicas pick the new CA up within one CertCheckInterval and renew their
// TLS certificates then; until they have, they still present certificates
// of the CA being retired.
func (k *KMS) retireDelay() time.Duration { return 2 * k.cfg.CertCheckInterval }

// rotateCA takes one rotation step, after catching up with the steps other
// replicas stored, and puts the result in force.
func (k *KMS) rotateCA(ctx context.Context, c *call, step string) (*caView, error) {
	k.caMu.Lock()
	defer k.caMu.Unlock()
	if _, err := k.refreshCALocked(ctx); err != nil {
		return nil, storeErr(err, "CA")
	}
	cur := k.caView.Load()
	now := k.now()
	next := caState{Step: step, At: now, By: c.caller.DN}
	phase := cur.state.phase()
	switch step {
	case caStepPrepare:
		if phase != api.CAPhaseStable {
			return nil, api.Errorf(api.CodeConflict, "A CA rotation is already under way (phase %s): finish it with activate and retire first.", phase)
		}
		n, err := k.addCARecord(ctx, slices.Max(cur.state.Trusted)+1, now)
		if err != nil {
			return nil, err
		}
		next.Trusted, next.Issuing = []int{cur.state.Issuing, n}, cur.state.Issuing
	case caStepActivate:
		switch phase {
		case api.CAPhaseStable:
			return nil, api.Errorf(api.CodeConflict, "There is no prepared CA to activate: prepare one first.")
		case api.CAPhaseActivated:
			return nil, api.Errorf(api.CodeConflict, "The new CA already issues: retire the previous one.")
		}
		next.Trusted, next.Issuing = cur.state.Trusted, slices.Max(cur.state.Trusted)
	case caStepRetire:
		if phase != api.CAPhaseActivated {
			return nil, api.Errorf(api.CodeConflict, "There is no previous CA to retire (phase %s): retire follows activate.", phase)
		}
		if wait := cur.state.At.Add(k.retireDelay()).Sub(now); wait > 0 {
			return nil, api.Errorf(api.CodeConflict, "The new CA was activated less than %v ago; other replicas may still present TLS certificates of the CA being retired. Retry in %v.",
				k.retireDelay(), wait.Round(time.Second))
		}
		if leaf := c.r.TLS.PeerCertificates[0]; leaf.CheckSignatureFrom(cur.ca.Cert()) != nil {
			return nil, api.Errorf(api.CodeConflict, "Your own certificate was issued by the CA being retired, so retiring it would lock you out: renew it first (POST /v1/apps/self/certificate) and retry with the new one.")
		}
		next.Trusted, next.Issuing = []int{cur.state.Issuing}, cur.state.Issuing
	default:
		return nil, errors.New("kms: unknown CA rotation step " + step)
	}
	// Build first: the new state must work (its key open) before it is
	// stored for every replica to follow.
	authority, err := k.buildCA(ctx, next)
	if err != nil {
		return nil, storeErr(err, "CA")
	}
	raw, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	stored, err := k.st.PutSettingIfAbsent(ctx, caStateName(cur.gen+1), raw)
	if err != nil {
		return nil, storeErr(err, "CA state")
	}
	if !bytes.Equal(stored, raw) {
		if _, err := k.refreshCALocked(ctx); err != nil {
			k.log.Warn("reading the CA state from the store failed", "err", err)
		}
		return nil, api.Errorf(api.CodeConflict, "The CA was changed concurrently (another admin or replica took a rotation step); read GET /v1/ca and retry.")
	}
	v := &caView{gen: cur.gen + 1, state: next, ca: authority}
	k.installCA(v)
	return v, nil
}

// addCARecord generates and stores a new CA as the first free record
// number from n on (a record whose step lost a race stays unused) and
// returns its number.
func (k *KMS) addCARecord(ctx context.Context, n int, now time.Time) (int, error) {
	for ; ; n++ {
		_, err := k.st.GetSetting(ctx, caRecordName(n))
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return 0, storeErr(err, "CA")
		}
	}
	raw, err := newCARecord(ctx, k.sealer, n, now)
	if err != nil {
		return 0, err
	}
	stored, err := k.st.PutSettingIfAbsent(ctx, caRecordName(n), raw)
	if err != nil {
		return 0, storeErr(err, "CA")
	}
	if !bytes.Equal(stored, raw) {
		return 0, api.Errorf(api.CodeConflict, "Another replica is preparing a CA at the same moment; read GET /v1/ca and retry.")
	}
	return n, nil
}
