package sqlstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestGrantCopiesRace: one grant presented at once by copies of one
// request (the same recipient key: a sidecar that resent a load while
// the first was still running) and by other requests of its instance.
// The grant is used once, in the transaction of one call's audit record:
// either every copy of the request is answered and every other request
// told the grant is used, or exactly one other request is answered and
// every copy told so. A copy that checked the grant before another copy
// used it goes on as that request presented again.
func TestGrantCopiesRace(t *testing.T) {
	const copies, others = 8, 8
	each(t, func(t *testing.T, b backend) {
		never := make(chan time.Time)
		env := kmstest.Start(t, func(o *kms.Options) {
			o.Store = b.mustOpen(t, b.fresh(t))
			o.Config.CertTicks, o.Config.AuditCheckpointTicks = never, never
		})
		env.Tenant(t, "acme")
		cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
		side, sc := env.EnrolledFake(t, cust, creds.DN)
		dk := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		g := cust.MustGrant(t, api.GrantRequest{InstanceID: side.Enrollment.InstanceID, EKBs: [][]byte{dk.EKB}})

		recipients := make([]api.PublicKey, copies+others)
		me := api.PublicKey{KEM: side.KEM, PublicKey: side.KEMKey.PublicKey().Bytes()}
		for i := range recipients {
			if i < copies {
				recipients[i] = me
				continue
			}
			priv, err := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
			if err != nil {
				t.Fatal(err)
			}
			if recipients[i], err = kcrypto.MarshalKEMPublicKey(priv.PublicKey()); err != nil {
				t.Fatal(err)
			}
		}
		errs := make([]error, len(recipients))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, to := range recipients {
			wg.Go(func() {
				<-start
				errs[i] = sc.Do("POST", "/v1/keys/load", api.LoadRequest{Grant: g, EKBs: [][]byte{dk.EKB}, Recipient: to}, nil)
			})
		}
		close(start)
		wg.Wait()

		var answered []int
		for i, err := range errs {
			switch {
			case err == nil:
				answered = append(answered, i)
			case api.CodeOf(err) != api.CodeAlreadyUsed:
				t.Errorf("load %d = %v, want success or 409 already_used", i, err)
			}
		}
		switch {
		case len(answered) == copies && answered[copies-1] == copies-1:
			t.Logf("the copies of one request won (%d answered)", copies)
		case len(answered) == 1 && answered[0] >= copies:
			t.Logf("another request won")
		default:
			t.Errorf("answered loads %v; want all the copies (0 to %d) or exactly one of the others", answered, copies-1)
		}
	})
}
