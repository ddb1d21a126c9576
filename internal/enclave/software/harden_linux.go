package software

import (
	"math"

	"golang.org/x/sys/unix"
)

// hardenProcess disables core dumps for good (soft and hard RLIMIT_CORE
// 0), clears the dumpable flag (no ptrace, no /proc/<pid>/mem for other
// processes of the same uid), and raises the soft RLIMIT_MEMLOCK to the
// hard limit. It returns the mlock limit in bytes (MaxUint64: unlimited).
func hardenProcess() (memlock uint64, err error) {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return 0, wrapf("disabling core dumps: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 0, wrapf("prctl(PR_SET_DUMPABLE, 0): %w", err)
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
		return math.MaxUint64, nil
	}
	return rl.Cur, nil
}
