//go:build !linux

package main

import (
	"errors"
	"os"
)

// withoutEcho is not offered here: give the component in a file.
func withoutEcho(*os.File, func() error) error {
	return errors.New("no prompt without echo on this system: give the component with --component-file")
}
