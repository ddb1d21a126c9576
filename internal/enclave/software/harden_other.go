//go:build !linux

package software

// hardenProcess does nothing beyond what memguard does on import (core
// dumps off): the dumpable flag and mlock limits are handled on Linux only.
func hardenProcess() (slots int, err error) {
	return 8, nil
}
