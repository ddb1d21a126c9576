package crypto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
)

// TestLogKeyRFC8032 signs RFC 8032 §7.1 tests 1 and 2 (Ed25519 is
// deterministic, so the signatures are exact).
func TestLogKeyRFC8032(t *testing.T) {
	for _, v := range []struct{ seed, pub, msg, sig string }{
		{
			"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
			"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
			"",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
		},
		{
			"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
			"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
			"72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
		},
	} {
		k, err := NewLogKey(secret.New(mustHex(v.seed)))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(k.Public().Bytes()); got != v.pub {
			t.Errorf("Public() = %s, want %s", got, v.pub)
		}
		msg := mustHex(v.msg)
		sig := k.Sign(msg)
		if got := hex.EncodeToString(sig); got != v.sig {
			t.Errorf("Sign(%s) = %s, want %s", v.msg, got, v.sig)
		}
		if !k.Public().Verify(msg, sig) {
			t.Errorf("Verify(%s, its signature) = false", v.msg)
		}
		bad := bytes.Clone(sig)
		bad[10] ^= 1
		if k.Public().Verify(msg, bad) || k.Public().Verify(append(msg, 0), sig) {
			t.Errorf("Verify accepts a changed signature or message")
		}
	}
}

func TestLogVerifyKeyPEM(t *testing.T) {
	k, err := GenerateLogKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public()
	got, err := ParseLogVerifyKeyPEM(pub.PEM())
	if err != nil || !got.Equal(pub) || got.ID() != pub.ID() || !strings.HasPrefix(pub.ID(), "ed25519:") {
		t.Fatalf("ParseLogVerifyKeyPEM(PEM()) = %v, %v; want %s", got.ID(), err, pub.ID())
	}
	ecPEM := p256PublicKeyPEM(t)
	for _, bad := range []string{"", "garbage", ecPEM} {
		if _, err := ParseLogVerifyKeyPEM([]byte(bad)); !errors.Is(err, ErrLogVerifyKey) {
			t.Errorf("ParseLogVerifyKeyPEM(%.20q) = %v, want ErrLogVerifyKey", bad, err)
		}
	}
	var zero LogVerifyKey
	if zero.Verify(nil, make([]byte, 64)) || zero.PEM() != nil || zero.ID() != "" || !zero.IsZero() {
		t.Error("the zero LogVerifyKey verifies, or has a PEM or an ID")
	}
	if _, err := LogVerifyKeyFromBytes(make([]byte, 31)); !errors.Is(err, ErrLogVerifyKey) {
		t.Errorf("LogVerifyKeyFromBytes(31 bytes) = %v, want ErrLogVerifyKey", err)
	}
}

func TestLogKeySeedRoundTrip(t *testing.T) {
	k, err := GenerateLogKey()
	if err != nil {
		t.Fatal(err)
	}
	seed := k.Seed()
	defer seed.Wipe()
	again, err := NewLogKey(seed)
	if err != nil || !again.Public().Equal(k.Public()) {
		t.Fatalf("NewLogKey(Seed()) = %v, %v; want the same key", again, err)
	}
	if _, err := NewLogKey(secret.New(make([]byte, 31))); err == nil {
		t.Error("NewLogKey(31-byte seed) succeeded")
	}
}

// TestLogKeyRedacts: no fmt verb nor JSON shows the seed or private key.
func TestLogKeyRedacts(t *testing.T) {
	seed := bytes.Repeat([]byte{0x5a}, 32)
	k, err := NewLogKey(secret.New(bytes.Clone(seed)))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(k)
	outs := []string{string(js)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		outs = append(outs, fmt.Sprintf(verb, k))
	}
	for _, out := range outs {
		if strings.Contains(out, hex.EncodeToString(seed)) || strings.Contains(out, "5a5a5a") || strings.Contains(strings.ToLower(out), "zfpa") {
			t.Errorf("a LogKey printed its seed: %q", out)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("a LogKey printed %q, want it redacted", out)
		}
	}
}
