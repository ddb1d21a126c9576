package software

import (
	"sync"
)

var (
	hardenOnce sync.Once
	hardenErr  error

	// lockSlots bounds how many memguard operations run at once across
	// the process, so that mlock stays under RLIMIT_MEMLOCK: when mlock
	// fails, memguard panics or, inside its session key, deadlocks.
	lockSlots chan struct{}
)

const (
	// maxLockSlots caps concurrent memguard operations even when mlock is
	// unlimited.
	maxLockSlots = 256
	// reservedLockPages are kept for memguard's session key (three pages)
	// and one spare.
	reservedLockPages = 4
	// pagesPerSlot: an open locks two pages (the buffer and a view of the
	// session key); sealing at most two.
	pagesPerSlot = 2
)

// harden hardens the process and sizes lockSlots, once.
func harden() error {
	hardenOnce.Do(func() {
		var slots int
		slots, hardenErr = hardenProcess()
		if hardenErr == nil {
			lockSlots = make(chan struct{}, slots)
		}
	})
	return hardenErr
}

// slotsFor is how many memguard operations may run at once under an mlock
// limit of memlock bytes; 0 means the limit is too small to run at all.
func slotsFor(memlock, pageSize uint64) int {
	pages := memlock / pageSize
	if pages < reservedLockPages+pagesPerSlot {
		return 0
	}
	return int(min((pages-reservedLockPages)/pagesPerSlot, maxLockSlots))
}

// acquireLockSlot blocks until a memguard operation may run and returns
// the function that gives the slot back.
func acquireLockSlot() (release func()) {
	lockSlots <- struct{}{}
	return func() { <-lockSlots }
}
