//go:build !linux

package software

// hardenProcess is a no-op beyond what memguard does on import (core dumps
// off): the dumpable flag and mlock limits are handled on Linux only.
func hardenProcess() (memlock uint64, err error) {
	return 1 << 20, nil
}
