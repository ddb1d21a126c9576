package kms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/atomicfile"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/store"
)

// The audit key: an Ed25519 key that signs every audit record and the
// log's checkpoints (internal/audit), so that someone who can write the
// database cannot rewrite, remove or reorder records unnoticed. One per
// database, shared by every replica: its seed is sealed under the root
// key in the setting "audit-key", like the CA key, and resealed with it.
// A verifier needs only its public half (GET /v1/audit/key,
// DIR/audit-key.pem), never the seal.

// Files a data dir holds for verifiers of the audit log.
const (
	// AuditKeyFile is the audit key's public half (PEM), written at every
	// start from the key the KMS unsealed, not from the database.
	AuditKeyFile = "audit-key.pem"
	// AuditCheckpointFile is the latest checkpoint this KMS signed
	// (api.AuditCheckpoint, JSON), rewritten at every checkpoint.
	AuditCheckpointFile = "audit-checkpoint.json"
)

const (
	auditKeySetting = "audit-key"
	auditKeyAADText = "dcaas/v1 audit-key"
	// kmsCaller is the caller of the records of what the KMS does by
	// itself (its audit key, its certificates, automatic rotation).
	kmsCaller = "kms"
)

// auditKeyRecord is how the audit key is stored. It holds nothing secret
// in clear.
type auditKeyRecord struct {
	SealedSeed []byte    `json:"sealed_seed"`
	CreatedAt  time.Time `json:"created_at"`
	// Previous are the public keys (hex) of the keys rotated away from
	// and not retired yet: verifiers still trust them, and replicas may
	// still sign with them (auditrotate.go).
	Previous []string `json:"previous,omitempty"`
}

func auditKeyAAD() []byte { return []byte(auditKeyAADText) }

// loadAuditKey returns the audit key stored in st, making it on first use
// (a new data dir, or one from before the keyed audit log): the key is
// stored in one transaction with the record of its creation
// (audit.ActionKeyCreated), the first record it signs, so two replicas
// opening at once agree on one key and one such record. created reports
// whether this call made it.
func loadAuditKey(ctx context.Context, st store.Store, sealer seal.Sealer, now func() time.Time) (_ *kcrypto.LogKey, raw []byte, created bool, err error) {
	raw, err = st.GetSetting(ctx, auditKeySetting)
	if errors.Is(err, store.ErrNotFound) {
		raw, created, err = newAuditKey(ctx, st, sealer, now)
	}
	if err != nil {
		return nil, nil, false, err
	}
	key, err := openAuditKey(ctx, sealer, raw)
	return key, raw, created, err
}

// newAuditKey makes, seals and stores an audit key with its creation
// record and returns the stored record (another replica's if it won).
func newAuditKey(ctx context.Context, st store.Store, sealer seal.Sealer, now func() time.Time) ([]byte, bool, error) {
	key, err := kcrypto.GenerateLogKey()
	if err != nil {
		return nil, false, err
	}
	defer key.Wipe()
	seed := key.Seed()
	sealed, err := sealer.Seal(ctx, seed, auditKeyAAD())
	seed.Wipe()
	if err != nil {
		return nil, false, fmt.Errorf("kms: sealing the audit key: %w", err)
	}
	raw, err := json.Marshal(auditKeyRecord{SealedSeed: sealed, CreatedAt: now().UTC()})
	if err != nil {
		return nil, false, err
	}
	var stored []byte
	err = st.InTx(ctx, func(tx store.Tx) error {
		var err error
		if stored, err = tx.PutSettingIfAbsent(ctx, auditKeySetting, raw); err != nil || !bytes.Equal(stored, raw) {
			return err // another replica made the key, and its record
		}
		_, err = audit.New(key, now).Append(ctx, tx, audit.Event{
			Caller: kmsCaller, Action: audit.ActionKeyCreated, KeyID: key.Public().ID(), Outcome: "ok",
		})
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("kms: storing the audit key: %w", err)
	}
	return stored, bytes.Equal(stored, raw), nil
}

// openAuditKey unseals a stored audit key record.
func openAuditKey(ctx context.Context, sealer seal.Sealer, raw []byte) (*kcrypto.LogKey, error) {
	var rec auditKeyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("kms: stored audit key: %w", err)
	}
	seed, err := sealer.Open(ctx, rec.SealedSeed, auditKeyAAD())
	if err != nil {
		return nil, fmt.Errorf("kms: the audit key does not open under this root key (the %s seal): %w", sealer.Name(), err)
	}
	defer seed.Wipe()
	return kcrypto.NewLogKey(seed)
}

// resealAuditKey returns the stored audit key record raw with its seed
// resealed.
func resealAuditKey(raw []byte, reseal func(SealedItem) ([]byte, error)) ([]byte, error) {
	var rec auditKeyRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("kms: stored audit key: %w", err)
	}
	sealed, err := reseal(SealedItem{Kind: SealedAuditKey, Sealed: rec.SealedSeed, AAD: auditKeyAAD()})
	if err != nil {
		return nil, err
	}
	rec.SealedSeed = sealed
	return json.Marshal(rec)
}

// AuditKey is the public key that verifies the KMS's audit log: the key
// that made it, which verifiers pin; the keys it was rotated to since are
// brought in by the log itself (internal/audit/keys.go).
func (k *KMS) AuditKey() kcrypto.LogVerifyKey { return k.akeys.anchorKey() }

// AuditSigningKey is the public half of the key the KMS signs the log with
// now (AuditKey until the first rotation).
func (k *KMS) AuditSigningKey() kcrypto.LogVerifyKey { return k.audit.Public() }

// storeRecorded runs fn and appends a record of ev, by the KMS itself,
// in one transaction: for what the KMS changes on its own (its TLS and
// admin certificates, automatic rotation).
func (k *KMS) storeRecorded(ctx context.Context, ev audit.Event, fn func(tx store.Tx) error) error {
	ev.Caller, ev.Outcome = kmsCaller, "ok"
	var r store.AuditRecord
	err := k.db.InTx(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		var err error
		r, err = k.audit.Append(context.WithoutCancel(ctx), tx, ev)
		return err
	})
	k.reads.changed() // a key rotated by the KMS, say (readcache.go)
	if err == nil {
		k.audit.Stored(r.Seq)
	}
	return err
}

// Checkpoint signs a checkpoint of the audit log's head now, stores it
// and writes it to DIR/audit-checkpoint.json (when opened with Open). The
// KMS does so every Config.AuditCheckpointInterval and when its Server
// closes. It refuses to sign a head that does not verify, or a log
// shorter than one it appended to (audit.ErrRegressed: records were
// removed under it).
func (k *KMS) Checkpoint(ctx context.Context) (api.AuditCheckpoint, error) {
	cp, err := k.audit.Checkpoint(ctx, k.db)
	if err != nil {
		return api.AuditCheckpoint{}, err
	}
	out := k.apiCheckpoint(cp)
	if k.checkpointFile != "" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return out, err
		}
		if err := atomicfile.Write(k.checkpointFile, append(b, '\n'), 0o644); err != nil {
			return out, fmt.Errorf("kms: writing the audit checkpoint: %w", err)
		}
	}
	return out, nil
}

func (k *KMS) apiCheckpoint(cp store.AuditCheckpoint) api.AuditCheckpoint {
	return api.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Signature: cp.Sig, KeyID: k.AuditSigningKey().ID()}
}

// checkpointNow is Checkpoint for the background loop and shutdown: it
// logs instead of returning.
func (k *KMS) checkpointNow(ctx context.Context) {
	cp, err := k.Checkpoint(ctx)
	switch {
	case errors.Is(err, audit.ErrRegressed):
		k.log.Error("AUDIT LOG TRUNCATED: records this KMS wrote are gone from the database; not signing a checkpoint", "err", err)
	case err != nil && ctx.Err() == nil:
		k.log.Warn("signing an audit checkpoint failed", "err", err)
	case err == nil:
		k.log.Debug("audit checkpoint", "seq", cp.Seq)
	}
}

// startCheckpointLoop signs a checkpoint every AuditCheckpointInterval (or
// on each of Config.AuditCheckpointTicks) until the returned function is
// called.
func (k *KMS) startCheckpointLoop() (stop func()) {
	return every(k.cfg.AuditCheckpointInterval, k.cfg.AuditCheckpointTicks, k.checkpointNow)
}

// every runs fn every interval, or on each of ticks when the test gives
// them, until the returned function is called, which waits for a running
// fn to return (its ctx is cancelled first).
func every(interval time.Duration, ticks <-chan time.Time, fn func(context.Context)) (stop func()) {
	var ticker *time.Ticker
	if ticks == nil {
		ticker = time.NewTicker(interval)
		ticks = ticker.C
	}
	return background(func(ctx context.Context) {
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticks:
			}
			fn(ctx)
		}
	})
}

// background runs loop in a goroutine until the returned function is
// called, which cancels loop's ctx and waits for loop to return.
func background(loop func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop(ctx)
	}()
	return func() { cancel(); <-done }
}

func (k *KMS) auditRoutes() {
	// Anyone may read the public key, like the trust bundle: it is what a
	// verifier of the log needs. Not audited, so anonymous readers cannot
	// grow the log.
	k.router.HandleFunc("GET /v1/audit/key", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, k.auditKeyView())
	})
	admin := []api.Role{api.RoleAdmin}
	k.handle("POST /v1/audit/key/rotate", "audit.rotate_key", admin, 0, k.rotateAuditKey)
	k.handle("POST /v1/audit/key/retire", "audit.retire_keys", admin, 0, k.retireAuditKeys)
	k.handle("GET /v1/audit/checkpoint", "audit.read_checkpoint", admin, 0, func(ctx context.Context, c *call) (any, error) {
		cp, err := k.st.LatestAuditCheckpoint(ctx)
		if err != nil {
			return nil, storeErr(err, "audit checkpoint")
		}
		return k.apiCheckpoint(cp), nil
	})
	k.handle("GET /v1/audit/start", "audit.read_start", admin, 0, func(ctx context.Context, c *call) (any, error) {
		s, err := k.AuditStart(ctx)
		if err != nil {
			return nil, storeErr(err, "audit log start")
		}
		return k.apiStart(s), nil
	})
	k.handle("POST /v1/audit/prune", audit.ActionPruned, admin, 0, k.pruneAudit)
	k.handle("POST /v1/audit/checkpoints", "audit.checkpoint", admin, 0, func(ctx context.Context, c *call) (any, error) {
		if err := c.decodeOptional(); err != nil {
			return nil, err
		}
		var cp store.AuditCheckpoint
		err := c.commit(ctx, func(tx store.Tx) error {
			var err error
			if cp, err = k.audit.Checkpoint(ctx, tx); err != nil {
				return auditCheckpointErr(err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		return k.apiCheckpoint(cp), nil
	})
}

// auditCheckpointErr maps a checkpoint the KMS refuses to sign.
func auditCheckpointErr(err error) error {
	var broken *audit.BrokenError
	if errors.Is(err, audit.ErrRegressed) || errors.As(err, &broken) {
		return &wrapped{api.Errorf(api.CodeConflict, "The audit log's head is not what this KMS wrote (records removed or changed in the database), so it is not signed; run dcaas audit verify."), err}
	}
	return storeErr(err, "audit checkpoint")
}
