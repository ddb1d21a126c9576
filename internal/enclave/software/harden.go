package software

import (
	"os"
	"sync"
)

var (
	hardenOnce sync.Once
	hardenErr  error

	// lockSlots bounds how many secrets are open (in LockedBuffers) at
	// once across the process, so that mlock never exceeds RLIMIT_MEMLOCK:
	// memguard panics when it does.
	lockSlots chan struct{}
)

const (
	// maxLockSlots caps concurrent opens even when mlock is unlimited.
	maxLockSlots = 256
	// reservedLockPages are left for the session key (three pages) and
	// for other users of mlock in the process.
	reservedLockPages = 8
)

// harden makes the process non-dumpable and sizes lockSlots, once.
func harden() error {
	hardenOnce.Do(func() {
		var memlock uint64
		memlock, hardenErr = hardenProcess()
		lockSlots = make(chan struct{}, slotsFor(memlock, uint64(os.Getpagesize())))
	})
	return hardenErr
}

// slotsFor is how many secrets may be open at once under an mlock limit
// of memlock bytes: each open locks two pages (the buffer and a view of
// the session key).
func slotsFor(memlock, pageSize uint64) int {
	pages := memlock / pageSize
	if pages <= reservedLockPages+2 {
		return 1
	}
	return int(min((pages-reservedLockPages)/2, maxLockSlots))
}

// acquireLockSlot blocks until a secret may be opened and returns the
// function that gives the slot back.
func acquireLockSlot() (release func()) {
	lockSlots <- struct{}{}
	return func() { <-lockSlots }
}
