package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/internal/store"
)

// wantValue fails t unless call returned no error (fatally, as check) and
// the setting value want.
func wantValue(t *testing.T, call string, got []byte, err error, want []byte) {
	t.Helper()
	check(t, call, err)
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %q, want %q", call, got, want)
	}
}

var settingsTests = []test{
	{"GetSetting/NotFound", func(t *testing.T, s store.Store) {
		for _, name := range []string{"ca-cert", ""} {
			_, err := s.GetSetting(t.Context(), name)
			wantErr(t, fmt.Sprintf("GetSetting(%q)", name), err, store.ErrNotFound)
		}
	}},
	{"PutSettingIfAbsent/Stores", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		want := []byte("certificate\x00bytes")
		got, err := s.PutSettingIfAbsent(ctx, "ca-cert", want)
		wantValue(t, "PutSettingIfAbsent(ca-cert)", got, err, want)
		got, err = s.GetSetting(ctx, "ca-cert")
		wantValue(t, "GetSetting(ca-cert)", got, err, want)
	}},
	{"SwapSetting", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		a, b, c := []byte("a"), []byte("b\x00"), []byte("c")
		check(t, "SwapSetting(start, nil, a)", s.SwapSetting(ctx, "start", nil, a))
		wantErr(t, "SwapSetting(start, nil, b) when set", s.SwapSetting(ctx, "start", nil, b), store.ErrConflict)
		wantErr(t, "SwapSetting(start, c, b) when a", s.SwapSetting(ctx, "start", c, b), store.ErrConflict)
		wantErr(t, "SwapSetting(unset, a, b)", s.SwapSetting(ctx, "unset", a, b), store.ErrConflict)
		got, err := s.GetSetting(ctx, "start")
		wantValue(t, "GetSetting(start) after refused swaps", got, err, a)
		check(t, "SwapSetting(start, a, b)", s.SwapSetting(ctx, "start", a, b))
		got, err = s.GetSetting(ctx, "start")
		wantValue(t, "GetSetting(start)", got, err, b)
		_, err = s.GetSetting(ctx, "unset")
		wantErr(t, "GetSetting(unset)", err, store.ErrNotFound)

		// Of many swaps from the same value, one wins.
		const n = 10
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = s.SwapSetting(ctx, "start", b, fmt.Appendf(nil, "v%d", i)) })
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Fatalf("swaps %d and %d from the same value both succeeded", won, i)
			case err == nil:
				won = i
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("SwapSetting #%d = %v, want nil or ErrConflict", i, err)
			}
		}
		if won < 0 {
			t.Fatal("no swap succeeded")
		}
		got, err = s.GetSetting(ctx, "start")
		wantValue(t, "GetSetting(start) after the race", got, err, fmt.Appendf(nil, "v%d", won))
	}},
	{"PutSettingIfAbsent/KeepsFirst", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		first, second := []byte("first"), []byte("second")
		_, err := s.PutSettingIfAbsent(ctx, "ca-key", first)
		check(t, "PutSettingIfAbsent(ca-key, first)", err)
		got, err := s.PutSettingIfAbsent(ctx, "ca-key", second)
		wantValue(t, "PutSettingIfAbsent(ca-key, second)", got, err, first)
		got, err = s.GetSetting(ctx, "ca-key")
		wantValue(t, "GetSetting(ca-key)", got, err, first)
		// Settings are independent of each other.
		got, err = s.PutSettingIfAbsent(ctx, "other", second)
		wantValue(t, "PutSettingIfAbsent(other)", got, err, second)
	}},
	{"PutSettingIfAbsent/Concurrent", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		const n = 20
		results := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				results[i], errs[i] = s.PutSettingIfAbsent(ctx, "ca-cert", fmt.Appendf(nil, "value %d", i))
			})
		}
		wg.Wait()
		for i := range n {
			check(t, fmt.Sprintf("PutSettingIfAbsent(ca-cert, value %d)", i), errs[i])
			if !bytes.Equal(results[i], results[0]) {
				t.Errorf("PutSettingIfAbsent(ca-cert, value %d) = %q, but another caller got %q", i, results[i], results[0])
			}
		}
		got, err := s.GetSetting(ctx, "ca-cert")
		wantValue(t, "GetSetting(ca-cert)", got, err, results[0])
	}},
	{"SettingNames", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		for _, name := range []string{"import-keys:b", "import-keys:a", "Import-keys:c", "import-keysX", "import_keys:d", "ca", "import-keys:%"} {
			_, err := s.PutSettingIfAbsent(ctx, name, []byte(name))
			check(t, "PutSettingIfAbsent("+name+")", err)
		}
		got, err := s.SettingNames(ctx, "import-keys:")
		check(t, "SettingNames(import-keys:)", err)
		if want := []string{"import-keys:%", "import-keys:a", "import-keys:b"}; !slices.Equal(got, want) {
			t.Errorf("SettingNames(import-keys:) = %q, want %q (case, _ and %% are not wildcards)", got, want)
		}
		got, err = s.SettingNames(ctx, "import-keys:%")
		check(t, "SettingNames(import-keys:%)", err)
		if want := []string{"import-keys:%"}; !slices.Equal(got, want) {
			t.Errorf("SettingNames(import-keys:%%) = %q, want %q", got, want)
		}
		if got, err := s.SettingNames(ctx, "nothing:"); err != nil || len(got) != 0 {
			t.Errorf("SettingNames(nothing:) = %q, %v; want none", got, err)
		}
	}},
}
