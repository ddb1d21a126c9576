package main

import (
	"strings"
	"testing"
)

func TestSidecarServeKMSPluginFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kms-plugin-socket", "/tmp/x.sock"}, "needs --kms-plugin-key"},
		{[]string{"--kms-plugin-key", "key_x"}, "need --kms-plugin-socket"},
		{[]string{"--kms-plugin-allow-uid", "0"}, "need --kms-plugin-socket"},
	} {
		// The flags are checked before enrolling: no KMS is needed to see it.
		_, _, err := cliRun(t, nil, append([]string{"sidecar", "serve", "--kms", "https://127.0.0.1:1", "--ca", "/nonexistent"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("sidecar serve %v = %v, want an error about %q", tc.args, err, tc.want)
		}
	}
}
