package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dcaas/dcaas/internal/store"
)

// Group commit (SQLite). Every write on SQLite goes through one connection
// and every commit waits for an fsync, so writers that each commit on
// their own are bounded by the disk's sync rate, whatever the CPU could
// do. A groupCommitter runs the InTx calls that arrive while a commit is
// under way together: one transaction, each call's function under a
// savepoint of its own, one COMMIT and one fsync for all of them. Each
// caller is answered only after that COMMIT returned, with its own
// function's error, or with the COMMIT's error if the group did not
// commit: nothing a caller is told was stored can be lost, and a call
// whose function failed leaves nothing behind (its savepoint is rolled
// back) without failing the others. The calls of a group run one after
// the other, in arrival order, each seeing what the ones before it wrote:
// the same as running them one by one.

// maxGroup bounds how many calls share one transaction.
const maxGroup = 128

// memberSavepoint is the savepoint each call of a group runs under; the
// store's methods inside it use their own (savepoint), nested in it.
const memberSavepoint = "dcaas_call"

type member struct {
	ctx  context.Context
	fn   func(tx store.Tx) error
	done chan result
}

type result struct {
	fnErr     error // fn's error (the call did not take effect)
	commitErr error // the group's BEGIN or COMMIT failed (nothing took effect)
	panicked  any   // fn panicked with this value
}

type groupCommitter struct {
	q queries // w and r of the database; tx nil

	mu      sync.Mutex
	pending []*member
	running bool // a goroutine is running groups
	closed  bool

	groups atomic.Int64 // groups run (for tests)
}

// inTx runs fn as one call of a group: see the comment above.
func (g *groupCommitter) inTx(ctx context.Context, fn func(tx store.Tx) error) error {
	m := &member{ctx: ctx, fn: fn, done: make(chan result, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return fmt.Errorf("%s: InTx: %w: the database is closed", g.q.d.name(), store.ErrUnavailable)
	}
	g.pending = append(g.pending, m)
	if !g.running {
		g.running = true
		go g.loop()
	}
	g.mu.Unlock()
	// The caller waits for its group's outcome even if ctx ends: only the
	// COMMIT tells whether its change was stored (a function that has not
	// started when ctx ends is not run).
	r := <-m.done
	switch {
	case r.panicked != nil:
		panic(r.panicked)
	case r.fnErr != nil:
		return r.fnErr
	}
	return r.commitErr
}

// loop runs groups until none is pending.
func (g *groupCommitter) loop() {
	ended := false
	defer func() {
		if ended {
			return
		}
		// A member's function ended this goroutine (runtime.Goexit, as
		// t.FailNow does in a test): run picked up its group; carry on in
		// a new goroutine so the calls still pending are not stranded.
		g.mu.Lock()
		restart := len(g.pending) > 0
		g.running = restart
		g.mu.Unlock()
		if restart {
			go g.loop()
		}
	}()
	for {
		g.mu.Lock()
		batch := g.pending
		if len(batch) > maxGroup {
			batch = batch[:maxGroup:maxGroup]
			g.pending = g.pending[maxGroup:]
		} else {
			g.pending = nil
		}
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			ended = true
			return
		}
		g.mu.Unlock()
		g.run(batch)
	}
}

// errGoexit answers the calls of a group one of whose functions ended the
// goroutine running them: none of them was stored.
var errGoexit = errors.New("sqlstore: a transaction's function ended its goroutine (runtime.Goexit); nothing of its group was stored")

// run runs one group in one transaction and answers each member.
func (g *groupCommitter) run(batch []*member) {
	g.groups.Add(1)
	answered := false
	defer func() {
		if !answered { // runtime.Goexit in a member's function: the transaction was rolled back
			for _, m := range batch {
				m.done <- result{commitErr: errGoexit}
			}
		}
	}()
	results := make([]result, len(batch))
	ran := false // some member's function succeeded: the group must commit
	// The transaction outlives any one member's context.
	err := g.q.begin(context.Background(), func(tx *sql.Tx) error {
		q := g.q.inTx(tx)
		for i, m := range batch {
			results[i] = g.runMember(tx, q, m)
			if results[i].commitErr != nil {
				// The transaction itself failed (a savepoint could not be
				// made or undone): every member fails with it.
				return results[i].commitErr
			}
			if results[i].fnErr == nil && results[i].panicked == nil {
				ran = true
			}
		}
		if !ran {
			return errNothingToCommit
		}
		// One signature for the group's audit records: its last one's.
		return q.signLastAudit(context.Background())
	})
	if errors.Is(err, errNothingToCommit) {
		err = nil
	}
	if err != nil {
		err = g.q.mapErr("InTx", err)
	}
	answered = true
	for i, m := range batch {
		r := results[i]
		if err != nil && r.panicked == nil && r.fnErr == nil {
			r.commitErr = err
		}
		m.done <- r
	}
}

var errNothingToCommit = errors.New("sqlstore: every call of the group failed")

// runMember runs m's function under its own savepoint of tx.
func (g *groupCommitter) runMember(tx *sql.Tx, q *queries, m *member) (r result) {
	if err := m.ctx.Err(); err != nil {
		return result{fnErr: err}
	}
	if _, err := tx.ExecContext(context.Background(), "SAVEPOINT "+memberSavepoint); err != nil {
		return result{commitErr: err}
	}
	undo := func() {
		_, err := tx.ExecContext(context.Background(), "ROLLBACK TO SAVEPOINT "+memberSavepoint)
		if err == nil {
			_, err = tx.ExecContext(context.Background(), "RELEASE SAVEPOINT "+memberSavepoint)
		}
		if err != nil {
			r.commitErr = err
		}
	}
	defer func() {
		if p := recover(); p != nil {
			r = result{panicked: p}
			undo()
		}
	}()
	if err := m.fn(q); err != nil {
		r.fnErr = err
		undo()
		return r
	}
	if _, err := tx.ExecContext(context.Background(), "RELEASE SAVEPOINT "+memberSavepoint); err != nil {
		return result{commitErr: err}
	}
	return r
}

// close makes later calls fail; calls already pending still run.
func (g *groupCommitter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
