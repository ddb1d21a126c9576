package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/internal/testvectors"
)

// goldenBatch is a "batch" entry of testdata/golden.json, written by
// testdata/gen_batch_golden.py from docs/formats.md (not from this code).
type goldenBatch struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Hex       string `json:"hex"`
	HeaderLen int    `json:"header_len"`
	Fields    struct {
		KEMID     uint16 `json:"kem_id"`
		Enc       string `json:"enc"`
		Recipient string `json:"recipient"`
		IssuedAt  int64  `json:"issued_at"`
		NotAfter  int64  `json:"not_after"`
		Keys      []struct {
			Metadata    string `json:"metadata"`
			Encryptions int64  `json:"encryptions"`
			Sealed      string `json:"sealed"`
		} `json:"keys"`
	} `json:"fields"`
}

func loadGoldenBatches(t testing.TB) []goldenBatch {
	t.Helper()
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var all []goldenBatch
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	var out []goldenBatch
	for _, g := range all {
		if g.Kind == "batch" {
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		t.Fatal("no batch vectors in testdata/golden.json")
	}
	return out
}

func TestGoldenBatch(t *testing.T) {
	for _, g := range loadGoldenBatches(t) {
		t.Run(g.Name, func(t *testing.T) {
			raw := testvectors.Hex(t, g.Hex)
			want := WrappedBatch{KEMID: g.Fields.KEMID, Enc: testvectors.Hex(t, g.Fields.Enc), Recipient: g.Fields.Recipient,
				IssuedAt: g.Fields.IssuedAt, NotAfter: g.Fields.NotAfter}
			for _, k := range g.Fields.Keys {
				want.Keys = append(want.Keys, BatchEntry{Metadata: testvectors.Hex(t, k.Metadata), Encryptions: k.Encryptions, Sealed: testvectors.Hex(t, k.Sealed)})
			}
			w, err := ParseWrappedBatch(raw)
			if err != nil {
				t.Fatalf("ParseWrappedBatch = %v", err)
			}
			if !batchEqual(w, &want) {
				t.Fatalf("ParseWrappedBatch = %+v, want %+v", w, want)
			}
			if m := want.Marshal(); !bytes.Equal(m, raw) {
				t.Errorf("Marshal = %x, want %x", m, raw)
			}
			if h := want.Header(); !bytes.Equal(h, raw[:g.HeaderLen]) {
				t.Errorf("Header = %x, want %x", h, raw[:g.HeaderLen])
			}
			if !IsWrappedBatch(raw) {
				t.Error("IsWrappedBatch = false")
			}
			if _, err := ParseWrappedKey(raw); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseWrappedKey(batch) = %v, want ErrMalformed (version 1 parsers refuse version 2)", err)
			}
		})
	}
}

func batchEqual(a, b *WrappedBatch) bool {
	if a.KEMID != b.KEMID || !bytes.Equal(a.Enc, b.Enc) || a.Recipient != b.Recipient ||
		a.IssuedAt != b.IssuedAt || a.NotAfter != b.NotAfter || len(a.Keys) != len(b.Keys) {
		return false
	}
	for i := range a.Keys {
		x, y := &a.Keys[i], &b.Keys[i]
		if !bytes.Equal(x.Metadata, y.Metadata) || x.Encryptions != y.Encryptions || !bytes.Equal(x.Sealed, y.Sealed) {
			return false
		}
	}
	return true
}

func TestEntryAAD(t *testing.T) {
	g := loadGoldenBatches(t)[1]
	w, err := ParseWrappedBatch(testvectors.Hex(t, g.Hex))
	if err != nil {
		t.Fatal(err)
	}
	h := w.Header()
	// header || u32 index || u32 len(md) || md || u64 encryptions
	want := append(bytes.Clone(h), 0, 0, 0, 0, 0, 0, 0, 0x1e)
	want = append(want, w.Keys[0].Metadata...)
	want = append(want, 0, 0, 0, 1, 0, 0, 0, 0)
	if got := AppendEntryAAD(nil, h, 0, &w.Keys[0]); !bytes.Equal(got, want) {
		t.Errorf("AppendEntryAAD(0) = %x, want %x", got, want)
	}
	if bytes.Equal(AppendEntryAAD(nil, h, 0, &w.Keys[1]), AppendEntryAAD(nil, h, 1, &w.Keys[1])) {
		t.Error("the index is not in the associated data")
	}
}

func validBatch() *WrappedBatch {
	return &WrappedBatch{KEMID: 0x20, Enc: bytes.Repeat([]byte{1}, 32), Recipient: "ins_x", IssuedAt: 10, NotAfter: 20,
		Keys: []BatchEntry{{Metadata: []byte("{}"), Encryptions: 3, Sealed: make([]byte, MinSealedLen)}}}
}

func TestWrappedBatchInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*WrappedBatch)
	}{
		{"kem 0", func(w *WrappedBatch) { w.KEMID = 0 }},
		{"no enc", func(w *WrappedBatch) { w.Enc = nil }},
		{"enc too long", func(w *WrappedBatch) { w.Enc = make([]byte, MaxEncLen+1) }},
		{"no recipient", func(w *WrappedBatch) { w.Recipient = "" }},
		{"recipient too long", func(w *WrappedBatch) { w.Recipient = strings.Repeat("i", MaxRecipientLen+1) }},
		{"recipient not UTF-8", func(w *WrappedBatch) { w.Recipient = "\xff" }},
		{"negative issued_at", func(w *WrappedBatch) { w.IssuedAt = -1 }},
		{"not_after = issued_at", func(w *WrappedBatch) { w.NotAfter = w.IssuedAt }},
		{"not_after before issued_at", func(w *WrappedBatch) { w.NotAfter = w.IssuedAt - 1 }},
		{"no keys", func(w *WrappedBatch) { w.Keys = nil }},
		{"empty metadata", func(w *WrappedBatch) { w.Keys[0].Metadata = nil }},
		{"metadata too long", func(w *WrappedBatch) { w.Keys[0].Metadata = make([]byte, MaxMetadataLen+1) }},
		{"negative encryptions", func(w *WrappedBatch) { w.Keys[0].Encryptions = -1 }},
		{"sealed too short", func(w *WrappedBatch) { w.Keys[0].Sealed = make([]byte, MinSealedLen-1) }},
		{"sealed too long", func(w *WrappedBatch) { w.Keys[0].Sealed = make([]byte, MaxSealedLen+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := validBatch()
			tc.mod(w)
			if err := w.Validate(); !errors.Is(err, ErrMalformed) {
				t.Errorf("Validate = %v, want ErrMalformed", err)
			}
		})
	}
	if err := validBatch().Validate(); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
}

func TestParseWrappedBatchMalformed(t *testing.T) {
	good := validBatch().Marshal()
	set := func(i int, v ...byte) []byte {
		b := bytes.Clone(good)
		copy(b[i:], v)
		return b
	}
	hl := len(validBatch().Header())
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", set(0, 'X')},
		{"version 1", set(4, 1)},
		{"version 3", set(4, 3)},
		{"kem 0", set(5, 0, 0)},
		{"enc length 0", set(7, 0, 0)},
		{"enc length past end", set(7, 0xff, 0xff)},
		{"recipient length 0", set(9+32, 0)},
		{"recipient length too long", set(9+32, MaxRecipientLen+1)},
		{"issued_at past int64", set(9+32+1+5, 0x80)},
		{"not_after before issued_at", set(9+32+1+5+8, 0, 0, 0, 0, 0, 0, 0, 1)},
		{"count 0", set(hl-4, 0, 0, 0, 0)},
		{"count beyond input", set(hl-4, 0, 0, 0, 2)},
		{"count huge", set(hl-4, 0xff, 0xff, 0xff, 0xff)},
		{"metadata length 0", set(hl, 0, 0, 0, 0)},
		{"encryptions past int64", set(hl+4+2, 0x80)},
		{"sealed length short", set(hl+4+2+8, 0, MinSealedLen-1)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w, err := ParseWrappedBatch(tc.b); !errors.Is(err, ErrMalformed) || w != nil {
				t.Errorf("ParseWrappedBatch = %v, %v; want nil, ErrMalformed", w, err)
			}
		})
	}
}

func FuzzParseWrappedBatch(f *testing.F) {
	addGolden(f, "batch")
	f.Add(validBatch().Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := ParseWrappedBatch(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || w != nil {
				t.Fatalf("ParseWrappedBatch = %v, %v; want nil, ErrMalformed", w, err)
			}
			return
		}
		if err := w.Validate(); err != nil {
			t.Fatalf("Validate(ParseWrappedBatch(b)) = %v", err)
		}
		if m := w.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("Marshal(ParseWrappedBatch(b)) = %x, want %x", m, b)
		}
		if h := w.Header(); !bytes.Equal(h, b[:len(h)]) {
			t.Fatalf("Header = %x, want the first bytes of the batch", h)
		}
	})
}
