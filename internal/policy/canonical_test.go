package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// TestCanonicalVectors: the canonical bytes of the SeedKDF v2 vectors'
// policies are those the vectors state (computed independently, by
// internal/crypto/testdata/seedkdf_v2_vectors.py).
func TestCanonicalVectors(t *testing.T) {
	raw, err := os.ReadFile("../crypto/testdata/seedkdf_v2_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct {
			Name            string      `json:"name"`
			Policy          *api.Policy `json:"policy"`
			CanonicalPolicy string      `json:"canonical_policy"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	withPolicy := 0
	for _, v := range file.Vectors {
		got, err := Canonical(v.Policy)
		if err != nil || hex.EncodeToString(got) != v.CanonicalPolicy {
			t.Errorf("%s: Canonical = %x, %v; want %s", v.Name, got, err, v.CanonicalPolicy)
		}
		if v.Policy != nil {
			withPolicy++
		}
	}
	if withPolicy == 0 {
		t.Error("no vector has a policy")
	}
}

// TestCanonical: what Normalize makes equal encodes equal, and what
// changes a policy's meaning changes its bytes.
func TestCanonical(t *testing.T) {
	rule := func(actions []api.Action, principals ...string) api.PolicyRule {
		return api.PolicyRule{Principals: principals, Actions: actions}
	}
	encDec := []api.Action{api.ActionEncrypt, api.ActionDecrypt}
	base := &api.Policy{Rules: []api.PolicyRule{
		rule(encDec, "CN=payments-api,O=acme", "CN=batch-*,O=acme"),
		rule([]api.Action{api.ActionDecrypt}, "CN=audit,O=acme"),
	}}
	same := []struct {
		name string
		p    *api.Policy
	}{
		{"actions and principals reordered", &api.Policy{Rules: []api.PolicyRule{
			rule([]api.Action{api.ActionDecrypt, api.ActionEncrypt}, "CN=batch-*,O=acme", "CN=payments-api,O=acme"),
			rule([]api.Action{api.ActionDecrypt}, "CN=audit,O=acme"),
		}}},
		{"rules reordered", &api.Policy{Rules: []api.PolicyRule{base.Rules[1], base.Rules[0]}}},
		{"a rule twice", &api.Policy{Rules: []api.PolicyRule{base.Rules[0], base.Rules[1], base.Rules[0]}}},
		{"DN spelling", &api.Policy{Rules: []api.PolicyRule{
			rule(encDec, "cn=payments-api, o=acme", "CN=batch-**,O=acme"),
			rule([]api.Action{api.ActionDecrypt}, "cn=audit,o=acme"),
		}}},
		{"all-zero limits", &api.Policy{Rules: base.Rules, Limits: &api.UsageLimits{}}},
	}
	want, err := Canonical(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range same {
		if got, err := Canonical(tt.p); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: Canonical = %x, %v; want %x", tt.name, got, err, want)
		}
	}
	different := []struct {
		name string
		p    *api.Policy
	}{
		{"no policy", nil},
		{"an action more", &api.Policy{Rules: []api.PolicyRule{
			rule([]api.Action{api.ActionEncrypt, api.ActionDecrypt, api.ActionMAC}, "CN=payments-api,O=acme", "CN=batch-*,O=acme"), base.Rules[1]}}},
		{"another principal", &api.Policy{Rules: []api.PolicyRule{
			rule(encDec, "CN=payments-api,O=acme", "CN=batch-eu,O=acme"), base.Rules[1]}}},
		{"a rule less", &api.Policy{Rules: base.Rules[:1]}},
		{"a limit", &api.Policy{Rules: base.Rules, Limits: &api.UsageLimits{MaxOperations: 1}}},
		{"another limit", &api.Policy{Rules: base.Rules, Limits: &api.UsageLimits{MaxBytes: 1}}},
		{"rules merged", &api.Policy{Rules: []api.PolicyRule{rule(encDec, "CN=payments-api,O=acme", "CN=batch-*,O=acme", "CN=audit,O=acme")}}},
	}
	seen := map[string]string{string(want): "base"}
	for _, tt := range different {
		got, err := Canonical(tt.p)
		if err != nil {
			t.Fatalf("%s: Canonical = %v", tt.name, err)
		}
		if prev, ok := seen[string(got)]; ok {
			t.Errorf("%s: Canonical = %x, the same as %s", tt.name, got, prev)
		}
		seen[string(got)] = tt.name
	}
	if got, _ := Canonical(nil); len(got) != 0 {
		t.Errorf("Canonical(nil) = %x, want empty", got)
	}
	if _, err := Canonical(&api.Policy{}); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("Canonical(no rules) = %v, want ErrInvalidPolicy", err)
	}
}

// TestCanonicalFields fails when the policy model gains a field:
// Canonical would not encode it, so two policies that differ in it would
// derive the same key under SeedKDF v2. Such a field needs a new SeedKDF
// version (or a refusal of policies that set it under v2).
func TestCanonicalFields(t *testing.T) {
	for _, tt := range []struct {
		v    any
		want []string
	}{
		{api.Policy{}, []string{"Rules", "Limits", "Release"}},
		{api.ReleaseConditions{}, []string{"Enclave", "AttestationProfile", "MaxAttestationAgeSeconds"}},
		{api.PolicyRule{}, []string{"Principals", "Actions"}},
		{api.UsageLimits{}, []string{"MaxLeaseSeconds", "MaxOperations", "MaxBytes"}},
	} {
		rt := reflect.TypeOf(tt.v)
		var got []string
		for i := range rt.NumField() {
			got = append(got, rt.Field(i).Name)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s has fields %v, Canonical encodes %v", rt.Name(), got, tt.want)
		}
	}
}

// TestCanonicalRelease: release conditions follow the limits, normalized
// (a profile implies enclave "tpm"), and only when there are some.
func TestCanonicalRelease(t *testing.T) {
	rule := []api.PolicyRule{{Principals: []string{"CN=a,O=t"}, Actions: []api.Action{api.ActionEncrypt}}}
	without, err := Canonical(&api.Policy{Rules: rule})
	if err != nil {
		t.Fatal(err)
	}
	with, err := Canonical(&api.Policy{Rules: rule, Release: &api.ReleaseConditions{AttestationProfile: "prod", MaxAttestationAgeSeconds: 3600}})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), without...)
	want = append(want, 0, 0, 0, 3, 't', 'p', 'm')
	want = append(want, 0, 0, 0, 4, 'p', 'r', 'o', 'd')
	want = append(want, 0, 0, 0, 0, 0, 0, 0x0e, 0x10)
	if !bytes.Equal(with, want) {
		t.Fatalf("Canonical with release = %x\nwant                     %x", with, want)
	}
	empty, err := Canonical(&api.Policy{Rules: rule, Release: &api.ReleaseConditions{}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(empty, without) {
		t.Fatalf("empty release conditions change the bytes: %x vs %x", empty, without)
	}
}
