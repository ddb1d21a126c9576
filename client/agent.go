package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/api"
)

// Agent keeps one sidecar enrolled and holding the key versions of an EKB
// store, with no person in the loop: run Reconcile every few seconds next
// to the sidecar (`dcaas sidecar enroll --watch` does). Each round it
//
//   - enrolls the sidecar if it waits for a token (EnsureEnrolled's steps),
//   - revokes the dead instance the sidecar's data dir held before a
//     restart, until the KMS has it revoked (a failed revocation is tried
//     again the next round, also after the agent itself restarted),
//   - loads every version kept in Store that the sidecar does not hold,
//     except those the KMS refused to release to this instance (disabled,
//     retired, expired, not for this custodian): after an enrollment, after
//     a restart of a sidecar that kept its enrollment (a TPM enclave), after
//     a load that failed half way, and when an EKB is added to the store.
//
// The store is the wanted state: to stop a key from being loaded again,
// remove its EKB from the store (an evicted key comes back the next round).
// An Agent is not safe for concurrent use.
type Agent struct {
	KMS     *KMS
	Sidecar *Sidecar
	// Store is the EKB store to keep loaded; nil enrolls only.
	Store *EKBStore
	// Options apply to the rewrap loads (batch size).
	Options []FlowOption

	instance string               // the instance refused is about
	refused  map[EKBVersion]error // versions the KMS refused to this instance
	revoked  map[string]bool      // previous instances the KMS has revoked
}

// AgentRound is what one Reconcile did.
type AgentRound struct {
	// Enrolled is the instance the sidecar was enrolled as in this round
	// ("" if it already was).
	Enrolled string
	// CustodianDN is the custodian the sidecar serves (set when Enrolled
	// is).
	CustodianDN string
	// Revoked lists the previous instances revoked in this round.
	Revoked []string
	// Loaded lists the key ids loaded in this round.
	Loaded []string
	// Skipped lists the versions the KMS refused in this round (they are
	// not tried again for this instance).
	Skipped []Skipped
}

// Reconcile does one round. Its error joins what failed in the round (the
// rest of the round still ran); ErrRevoked means the sidecar itself was
// revoked and will not serve again.
func (a *Agent) Reconcile(ctx context.Context) (AgentRound, error) {
	var r AgentRound
	st, err := a.Sidecar.Status(ctx)
	if err != nil {
		return r, fmt.Errorf("client: sidecar status: %w", err)
	}
	if st.Revoked {
		return r, &Error{Code: api.CodeRevoked, Message: fmt.Sprintf("sidecar instance %s has been revoked; start a new sidecar", st.InstanceID)}
	}
	if !st.Enrolled {
		if st, err = a.enroll(ctx, st); err != nil {
			return r, err
		}
		r.Enrolled, r.CustodianDN = st.InstanceID, st.CustodianDN
	}
	if st.InstanceID != a.instance {
		a.instance, a.refused = st.InstanceID, nil
	}
	var errs []error
	if prev := st.PreviousInstanceID; prev != "" && prev != st.InstanceID && !a.revoked[prev] {
		err := a.KMS.RevokeInstance(ctx, prev)
		switch {
		case err == nil:
			r.Revoked = append(r.Revoked, prev)
			fallthrough
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict):
			// Gone or revoked before (by the sidecar itself at shutdown,
			// or by another agent): done either way.
			if a.revoked == nil {
				a.revoked = map[string]bool{}
			}
			a.revoked[prev] = true
		default:
			errs = append(errs, fmt.Errorf("client: revoking the sidecar's previous instance %s (will retry): %w", prev, err))
		}
	}
	if a.Store != nil {
		if err := a.load(ctx, &r); err != nil {
			errs = append(errs, err)
		}
	}
	return r, errors.Join(errs...)
}

// enroll mints a token as the custodian and hands it to the sidecar; it
// returns the sidecar's status after.
func (a *Agent) enroll(ctx context.Context, st *api.Status) (*api.Status, error) {
	tok, err := a.KMS.CreateEnrollmentToken(ctx, api.CreateTokenRequest{})
	if err != nil {
		return nil, fmt.Errorf("client: minting an enrollment token: %w", err)
	}
	if _, err := a.Sidecar.Enroll(ctx, tok.Token); err != nil && !errors.Is(err, ErrConflict) {
		// (A conflict: enrolled meanwhile by someone else; the token
		// expires unused.)
		return nil, fmt.Errorf("client: enrolling the sidecar: %w", err)
	}
	now, err := a.Sidecar.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: sidecar status: %w", err)
	}
	if now.PreviousInstanceID == "" && st.PreviousInstanceID != now.InstanceID {
		now.PreviousInstanceID = st.PreviousInstanceID
	}
	return now, nil
}

// load loads the store's versions the sidecar lacks.
func (a *Agent) load(ctx context.Context, r *AgentRound) error {
	list, err := a.Store.List()
	if err != nil {
		return err
	}
	held, err := a.Sidecar.Keys(ctx)
	if err != nil {
		return fmt.Errorf("client: the sidecar's loaded keys: %w", err)
	}
	have := make(map[EKBVersion]bool, len(held))
	for _, k := range held {
		have[EKBVersion{KeyID: k.KeyID, Version: k.Version}] = true
	}
	var missing []EKBVersion
	for _, v := range list {
		if _, refused := a.refused[v]; !refused && !have[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	ids, skipped, err := loadVersions(ctx, a.KMS, a.Sidecar, *a.Store, missing, a.Options...)
	r.Loaded, r.Skipped = ids, skipped
	for _, s := range skipped {
		if a.refused == nil {
			a.refused = map[EKBVersion]error{}
		}
		a.refused[EKBVersion{KeyID: s.KeyID, Version: s.Version}] = s.Err
	}
	if err != nil {
		return fmt.Errorf("client: loading %s into the sidecar (will retry): %w", a.Store.Dir, err)
	}
	return nil
}
