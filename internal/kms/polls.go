package kms

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/store"
)

// Revocation polls at fleet scale. Every sidecar polls GET /v1/revocations
// (every 10 s by default). A poll that delivers nothing — no event about
// the instance or a key released to it — reads the feed and changes
// nothing the KMS guards: it is the instance's sign of life. Committing
// and auditing each such poll would put 8,640 records a day per sidecar
// into the audit log (86 million a day for 10,000 sidecars) and as many
// transactions on the one write path the central operations share. So
// such a poll is answered with no audit record and no write of its own:
// its time and key count are kept here, shown at once by this replica's
// fleet view (GET /v1/instances), and stored for every instance together
// by the janitor every Config.PollFlushInterval and when the Server
// closes, in one transaction with one audit record of the KMS's
// (instances.polled). A
// poll that delivers events, and one that fails (a revoked or unknown
// instance, a bad cursor), is audited like any call.

// actionInstancesPolled is the record of a flush of poll times.
const actionInstancesPolled = "instances.polled"

type pollNote struct {
	at     time.Time
	loaded int // keys the sidecar said it holds; -1 when it did not say
}

// pollNotes are the polls answered quietly since the last flush, by
// instance id; the latest of each.
type pollNotes struct {
	mu sync.Mutex
	m  map[string]pollNote
}

func (p *pollNotes) note(id string, n pollNote) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]pollNote{}
	}
	if old, ok := p.m[id]; ok && n.loaded < 0 {
		n.loaded = old.loaded // a poll that did not say keeps the last count said
	}
	p.m[id] = n
}

func (p *pollNotes) get(id string) (pollNote, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.m[id]
	return n, ok
}

// take empties the notes and returns them.
func (p *pollNotes) take() map[string]pollNote {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.m
	p.m = nil
	return m
}

// putBack returns notes a flush could not store, unless a newer poll of
// the same instance came meanwhile.
func (p *pollNotes) putBack(m map[string]pollNote) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]pollNote{}
	}
	for id, n := range m {
		if cur, ok := p.m[id]; !ok || cur.at.Before(n.at) {
			p.m[id] = n
		}
	}
}

// flushPolls stores the quiet polls' times and counts (NotePoll), with
// one audit record. An instance deleted meanwhile is skipped; a failure
// keeps the notes for the next flush.
func (k *KMS) flushPolls(ctx context.Context) error {
	notes := k.polls.take()
	if len(notes) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(notes)) // one order: concurrent flushes of replicas lock rows alike
	err := k.storeRecorded(ctx, audit.Event{Action: actionInstancesPolled}, func(tx store.Tx) error {
		for _, id := range ids {
			n := notes[id]
			if err := tx.NotePoll(ctx, id, n.at, n.loaded); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		k.polls.putBack(notes)
		k.log.Warn("storing the sidecars' poll times failed; kept for the next try", "instances", len(notes), "err", err)
	}
	return err
}
