package software

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestHardened(t *testing.T) {
	open(t)
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil || dumpable != 0 {
		t.Errorf("PR_GET_DUMPABLE = %d, %v; want 0", dumpable, err)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &rl); err != nil || rl.Cur != 0 || rl.Max != 0 {
		t.Errorf("RLIMIT_CORE = %+v, %v; want 0/0", rl, err)
	}
	if cap(lockSlots) < 1 {
		t.Errorf("cap(lockSlots) = %d, want at least 1", cap(lockSlots))
	}
}
