package crypto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// slowMul is the textbook GF(2^8) product: carry-less multiplication,
// then reduction mod 0x11b, with branches. The reference gfMul is
// checked against on every pair.
func slowMul(a, b byte) byte {
	var p uint16
	for i := 0; i < 8; i++ {
		if b&(1<<i) != 0 {
			p ^= uint16(a) << i
		}
	}
	for i := 15; i >= 8; i-- {
		if p&(1<<i) != 0 {
			p ^= 0x11b << (i - 8)
		}
	}
	return byte(p)
}

func TestGFMul(t *testing.T) {
	// FIPS 197 §4.2: {57} • {83} = {c1}, {57} • {13} = {fe}.
	for _, c := range []struct{ a, b, want byte }{
		{0x57, 0x83, 0xc1}, {0x57, 0x13, 0xfe}, {0x02, 0x80, 0x1b}, {0x00, 0xff, 0x00}, {0x01, 0xa5, 0xa5},
	} {
		if got := gfMul(c.a, c.b); got != c.want {
			t.Errorf("gfMul(%#x, %#x) = %#x, want %#x", c.a, c.b, got, c.want)
		}
	}
	for a := range 256 {
		for b := range 256 {
			if got, want := gfMul(byte(a), byte(b)), slowMul(byte(a), byte(b)); got != want {
				t.Fatalf("gfMul(%#x, %#x) = %#x, textbook product %#x", a, b, got, want)
			}
		}
	}
}

func TestGFInv(t *testing.T) {
	if gfInv(0) != 0 {
		t.Errorf("gfInv(0) = %#x, want 0", gfInv(0))
	}
	// FIPS 197 §4.2.1 / §5.1.1: the inverse of {53} is {ca}.
	if gfInv(0x53) != 0xca {
		t.Errorf("gfInv(0x53) = %#x, want 0xca", gfInv(0x53))
	}
	for a := 1; a < 256; a++ {
		if p := gfMul(byte(a), gfInv(byte(a))); p != 1 {
			t.Fatalf("%#x * gfInv(%#x) = %#x, want 1", a, a, p)
		}
	}
}

// combinations returns every k-subset of 0..n-1.
func combinations(n, k int) [][]int {
	var res [][]int
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			res = append(res, slices.Clone(cur))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
	return res
}

func pick(shares []Share, idx []int) []Share {
	out := make([]Share, len(idx))
	for i, j := range idx {
		out[i] = shares[j]
	}
	return out
}

func TestSplitCombineAllSubsets(t *testing.T) {
	sec := secret.New(mustHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"))
	for _, c := range []struct{ n, k int }{{1, 1}, {2, 1}, {2, 2}, {3, 2}, {5, 3}, {5, 5}, {6, 4}, {7, 7}} {
		t.Run(fmt.Sprintf("%d-of-%d", c.k, c.n), func(t *testing.T) {
			shares, err := Split(sec, c.n, c.k)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range shares {
				if s.X != byte(i+1) || s.Y.Len() != sec.Len() {
					t.Fatalf("share %d: x %d, %d bytes", i, s.X, s.Y.Len())
				}
			}
			for size := 1; size <= c.n; size++ {
				for _, idx := range combinations(c.n, size) {
					got, err := Combine(pick(shares, idx))
					if err != nil {
						t.Fatalf("%v: %v", idx, err)
					}
					if ok := got.Equal(sec); ok != (size >= c.k) {
						t.Fatalf("shares %v (threshold %d): recovered the secret = %v", idx, c.k, ok)
					}
				}
			}
		})
	}
}

// TestSplitFewerRevealNothing checks the property behind the scheme on one
// byte: for k-1 fixed shares, every candidate secret is consistent with
// exactly one value of the missing share, so k-1 shares rule none out.
func TestSplitFewerRevealNothing(t *testing.T) {
	shares, err := Split(secret.New([]byte{0x9c}), 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[byte]bool)
	for y := range 256 {
		third := Share{X: 3, Y: secret.New([]byte{byte(y)})}
		got, err := Combine([]Share{shares[0], shares[1], third})
		if err != nil {
			t.Fatal(err)
		}
		seen[got.Expose()[0]] = true
	}
	if len(seen) != 256 {
		t.Fatalf("two of three shares are consistent with %d secrets, want all 256", len(seen))
	}
}

func TestSplitRandom(t *testing.T) {
	sec := secret.New(bytes.Repeat([]byte{0x42}, 32))
	a, _ := Split(sec, 3, 2)
	b, _ := Split(sec, 3, 2)
	if a[0].Y.Equal(b[0].Y) {
		t.Fatal("two splits of one secret gave the same first share: coefficients are not random")
	}
	if a[0].Y.Equal(sec) || a[1].Y.Equal(sec) {
		t.Fatal("a share of a 2-of-3 split equals the secret")
	}
	if s := fmt.Sprintf("%v %+v %#v", a[0], a[0], a[0]); bytes.Contains([]byte(s), []byte(hex.EncodeToString(a[0].Y.Expose()))) {
		t.Fatalf("a share prints its value: %s", s)
	}
}

func TestSplitCombineRefusals(t *testing.T) {
	sec := secret.New([]byte{1, 2, 3})
	for _, c := range []struct{ n, k int }{{0, 0}, {3, 0}, {2, 3}, {256, 2}, {-1, 1}} {
		if _, err := Split(sec, c.n, c.k); err == nil {
			t.Errorf("Split(n=%d, k=%d) accepted", c.n, c.k)
		}
	}
	if _, err := Split(secret.New(nil), 3, 2); err == nil {
		t.Error("Split of an empty secret accepted")
	}
	shares, _ := Split(sec, 3, 2)
	for name, in := range map[string][]Share{
		"none":       nil,
		"duplicate":  {shares[0], shares[0]},
		"x zero":     {{X: 0, Y: secret.New([]byte{1, 2, 3})}, shares[1]},
		"lengths":    {shares[0], {X: 9, Y: secret.New([]byte{1})}},
		"empty":      {{X: 1, Y: secret.New(nil)}, {X: 2, Y: secret.New(nil)}},
		"same x two": {shares[1], {X: 2, Y: secret.New([]byte{9, 9, 9})}},
	} {
		if _, err := Combine(in); !errors.Is(err, ErrShares) {
			t.Errorf("%s: Combine = %v, want ErrShares", name, err)
		}
	}
}

type openBaoVectors struct {
	Source    string `json:"source"`
	SourceSHA string `json:"source_sha256"`
	Vectors   []struct {
		Secret    string   `json:"secret"`
		Parts     int      `json:"parts"`
		Threshold int      `json:"threshold"`
		Shares    []string `json:"shares"`
	} `json:"vectors"`
}

// fromOpenBao decodes a share in OpenBao's encoding: the y bytes, then x.
func fromOpenBao(t *testing.T, h string) Share {
	b := mustHex(h)
	if len(b) < 2 {
		t.Fatalf("share %q too short", h)
	}
	return Share{X: b[len(b)-1], Y: secret.New(b[:len(b)-1])}
}

// TestShamirOpenBaoVectors: secrets split by OpenBao's implementation
// (testdata/shamir_openbao_vectors.json names the module, version and file)
// are recovered by our Combine from every subset of threshold shares (up
// to 200 per vector), and by none of threshold-1 shares.
func TestShamirOpenBaoVectors(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "shamir_openbao_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f openBaoVectors
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if f.Source == "" || len(f.Vectors) < 8 {
		t.Fatalf("vector file: source %q, %d vectors", f.Source, len(f.Vectors))
	}
	for i, v := range f.Vectors {
		want := secret.New(mustHex(v.Secret))
		if len(v.Shares) != v.Parts {
			t.Fatalf("vector %d: %d shares for %d parts", i, len(v.Shares), v.Parts)
		}
		shares := make([]Share, len(v.Shares))
		for j, h := range v.Shares {
			shares[j] = fromOpenBao(t, h)
		}
		checked := 0
		for _, idx := range combinations(v.Parts, v.Threshold) {
			if checked == 200 {
				break
			}
			checked++
			got, err := Combine(pick(shares, idx))
			if err != nil {
				t.Fatalf("vector %d %v: %v", i, idx, err)
			}
			if !got.Equal(want) {
				t.Fatalf("vector %d (%d of %d): shares %v give %x, want %s", i, v.Threshold, v.Parts, idx, got.Expose(), v.Secret)
			}
		}
		// Fewer than threshold shares (at least two, so Combine runs) give
		// the constant term of another polynomial: the secret only by a
		// chance of 2^-8 per byte, so check vectors longer than 4 bytes.
		if v.Threshold > 2 && len(mustHex(v.Secret)) > 4 {
			got, err := Combine(shares[:v.Threshold-1])
			if err != nil || got.Equal(want) {
				t.Fatalf("vector %d: %d of threshold %d shares: %v, recovered the secret = %v", i, v.Threshold-1, v.Threshold, err, err == nil)
			}
		}
	}
}

type oursCombined struct {
	Source  string `json:"source"`
	Vectors []struct {
		Secret    string `json:"secret"`
		Shares    int    `json:"shares"`
		Threshold int    `json:"threshold"`
		Points    []struct {
			X int    `json:"x"`
			Y string `json:"y"`
		} `json:"points"`
		Subsets []struct {
			X        []int  `json:"x"`
			Combined string `json:"combined"`
		} `json:"openbao_combine"`
	} `json:"vectors"`
}

// TestShamirOursCombinedByOpenBao: shares our Split made
// (testdata/shamir_ours.json) were combined by OpenBao's Combine outside
// the repo; testdata/shamir_ours_combined_by_openbao.json records what it
// recovered from each threshold subset. Each must be the secret, the
// points must be those of shamir_ours.json, and our Combine must agree.
func TestShamirOursCombinedByOpenBao(t *testing.T) {
	var ours, theirs oursCombined
	for name, into := range map[string]*oursCombined{"shamir_ours.json": &ours, "shamir_ours_combined_by_openbao.json": &theirs} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, into); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if len(theirs.Vectors) != len(ours.Vectors) || len(ours.Vectors) < 5 {
		t.Fatalf("%d vectors combined by OpenBao, %d of ours", len(theirs.Vectors), len(ours.Vectors))
	}
	for i, v := range theirs.Vectors {
		o := ours.Vectors[i]
		if v.Secret != o.Secret || len(v.Points) != len(o.Points) || len(v.Points) != v.Shares {
			t.Fatalf("vector %d differs from shamir_ours.json", i)
		}
		shares := make([]Share, len(v.Points))
		for j, p := range v.Points {
			if p != o.Points[j] || p.X != j+1 {
				t.Fatalf("vector %d point %d differs from shamir_ours.json or is not x=%d", i, j, j+1)
			}
			shares[j] = Share{X: byte(p.X), Y: secret.New(mustHex(p.Y))}
		}
		want := len(combinations(v.Shares, v.Threshold))
		if want > 64 {
			want = 64
		}
		if len(v.Subsets) != want {
			t.Fatalf("vector %d: OpenBao combined %d subsets, want %d", i, len(v.Subsets), want)
		}
		for _, sub := range v.Subsets {
			if len(sub.X) != v.Threshold {
				t.Fatalf("vector %d: subset %v of the wrong size", i, sub.X)
			}
			if sub.Combined != v.Secret {
				t.Fatalf("vector %d: OpenBao's Combine of our shares %v gave %q, want %s", i, sub.X, sub.Combined, v.Secret)
			}
			idx := make([]int, len(sub.X))
			for j, x := range sub.X {
				idx[j] = x - 1
			}
			got, err := Combine(pick(shares, idx))
			if err != nil || hex.EncodeToString(got.Expose()) != v.Secret {
				t.Fatalf("vector %d: our Combine of %v: %v", i, sub.X, err)
			}
		}
	}
}

// TestWriteOurShares writes testdata/shamir_ours.json, the input of the
// OpenBao cross-check, when DCAAS_WRITE_SHAMIR_OURS=1 (run once by hand;
// the file is committed).
func TestWriteOurShares(t *testing.T) {
	if os.Getenv("DCAAS_WRITE_SHAMIR_OURS") != "1" {
		t.Skip("set DCAAS_WRITE_SHAMIR_OURS=1 to rewrite testdata/shamir_ours.json")
	}
	type point struct {
		X int    `json:"x"`
		Y string `json:"y"`
	}
	type vec struct {
		Secret    string  `json:"secret"`
		Shares    int     `json:"shares"`
		Threshold int     `json:"threshold"`
		Points    []point `json:"points"`
	}
	out := struct {
		Source  string `json:"source"`
		Vectors []vec  `json:"vectors"`
	}{Source: "dcaas internal/crypto.Split (shamir.go)"}
	for _, c := range []struct {
		secret string
		n, k   int
	}{
		{"00", 2, 2}, {"ff", 3, 2}, {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 5, 3},
		{"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", 5, 5},
		{"7c0ffee0badc0de0deadbeef0123456789abcdeffedcba98765432100aa55aa5", 9, 5},
		{hex.EncodeToString([]byte("split by dcaas")), 255, 2},
	} {
		shares, err := Split(secret.New(mustHex(c.secret)), c.n, c.k)
		if err != nil {
			t.Fatal(err)
		}
		v := vec{Secret: c.secret, Shares: c.n, Threshold: c.k}
		for _, s := range shares {
			v.Points = append(v.Points, point{X: int(s.X), Y: hex.EncodeToString(s.Y.Expose())})
		}
		out.Vectors = append(out.Vectors, v)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "shamir_ours.json"), append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
