package hardening

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func process() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("hardening: disabling core dumps: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("hardening: prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}

// envBounds reads env_start and env_end (fields 50 and 51 of proc(5)'s
// /proc/<pid>/stat) of this process.
func envBounds() (start, end int64, err error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// or parentheses: fields resume after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("hardening: /proc/self/stat without a command name")
	}
	fields := strings.Fields(string(b[i+1:])) // fields[0] is field 3
	if len(fields) < 49 {
		return 0, 0, errors.New("hardening: /proc/self/stat has no env_start/env_end (kernel older than 3.5)")
	}
	if start, err = strconv.ParseInt(fields[47], 10, 64); err != nil {
		return 0, 0, err
	}
	if end, err = strconv.ParseInt(fields[48], 10, 64); err != nil {
		return 0, 0, err
	}
	if start <= 0 || end <= start || end-start > 1<<24 {
		return 0, 0, fmt.Errorf("hardening: implausible environment block %#x..%#x", start, end)
	}
	return start, end, nil
}

// scrubInitialEnv overwrites the values of names in the environment block
// the kernel set up at exec, through /proc/self/mem. Go keeps its own copy
// of the environment, so nothing in the process reads the block again.
func scrubInitialEnv(names []string) error {
	if len(names) == 0 {
		return nil
	}
	start, end, err := envBounds()
	if err != nil {
		return err
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("hardening: %w", err)
	}
	defer mem.Close()
	block := make([]byte, end-start)
	if _, err := mem.ReadAt(block, start); err != nil {
		return fmt.Errorf("hardening: reading the environment block: %w", err)
	}
	off := 0
	for _, entry := range bytes.Split(block, []byte{0}) {
		for _, n := range names {
			if bytes.HasPrefix(entry, []byte(n+"=")) && len(entry) > len(n)+1 {
				v := int64(off + len(n) + 1)
				if _, err := mem.WriteAt(make([]byte, len(entry)-len(n)-1), start+v); err != nil {
					return fmt.Errorf("hardening: scrubbing %s: %w", n, err)
				}
			}
		}
		off += len(entry) + 1
	}
	return nil
}
