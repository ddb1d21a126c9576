// Package hardening protects a process that holds secrets from other
// processes of the same user: no core dumps, not dumpable (no ptrace, no
// /proc/<pid>/mem or environ for them), and secrets handed over in the
// environment scrubbed from the process's initial environment block, which
// os.Unsetenv does not touch and /proc/<pid>/environ shows for the
// process's whole life.
//
// Call ScrubEnv first, after reading the variables: once the process is
// not dumpable, the kernel no longer lets it open its own /proc/self/mem.
package hardening

import "os"

// ScrubEnv removes each named variable from the environment (child
// processes do not inherit it) and, on Linux, overwrites its value with
// zero bytes in the environment block the process started with. A name
// that is not set is skipped.
func ScrubEnv(names ...string) error {
	for _, n := range names {
		os.Unsetenv(n)
	}
	return scrubInitialEnv(names)
}

// Process turns core dumps off for good (soft and hard RLIMIT_CORE 0) and
// clears the dumpable flag (Linux; elsewhere it does nothing).
func Process() error { return process() }
