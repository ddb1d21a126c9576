package software

import (
	"os"

	"golang.org/x/sys/unix"
)

// hardenProcess disables core dumps for good (soft and hard RLIMIT_CORE
// 0), clears the dumpable flag (no ptrace, no /proc/<pid>/mem for other
// processes of the same uid), and works out how many memguard operations
// may run at once: unbounded by mlock with CAP_IPC_LOCK (root has it),
// otherwise from RLIMIT_MEMLOCK, whose soft limit it first raises to the
// hard one.
func hardenProcess() (slots int, err error) {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return 0, wrapf("disabling core dumps: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 0, wrapf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	if hasIPCLock() {
		return maxLockSlots, nil
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return 0, wrapf("reading RLIMIT_MEMLOCK: %w", err)
	}
	if rl.Cur < rl.Max {
		raised := unix.Rlimit{Cur: rl.Max, Max: rl.Max}
		if unix.Setrlimit(unix.RLIMIT_MEMLOCK, &raised) == nil {
			rl = raised
		}
	}
	if rl.Cur == unix.RLIM_INFINITY {
		return maxLockSlots, nil
	}
	page := uint64(os.Getpagesize())
	slots = slotsFor(rl.Cur, page)
	if slots == 0 {
		return 0, wrapf("RLIMIT_MEMLOCK is %d bytes, at least %d needed: raise it (ulimit -l, systemd LimitMEMLOCK=) or grant CAP_IPC_LOCK",
			rl.Cur, (reservedLockPages+pagesPerSlot)*page)
	}
	return slots, nil
}

// hasIPCLock reports whether the process may mlock beyond RLIMIT_MEMLOCK.
func hasIPCLock() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3 has two 32-bit words
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_IPC_LOCK/32].Effective&(1<<(unix.CAP_IPC_LOCK%32)) != 0
}
