package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
)

func TestNormalizeRelease(t *testing.T) {
	ok := []api.PolicyRule{rule([]string{"CN=a"}, api.ActionDecrypt)}
	tests := []struct {
		name    string
		in      *api.ReleaseConditions
		want    *api.ReleaseConditions
		wantErr string
	}{
		{"absent", nil, nil, ""},
		{"empty is dropped", &api.ReleaseConditions{}, nil, ""},
		{"enclave tpm", &api.ReleaseConditions{Enclave: api.EnclaveTPM}, &api.ReleaseConditions{Enclave: api.EnclaveTPM}, ""},
		{"enclave software", &api.ReleaseConditions{Enclave: api.EnclaveSoftware}, &api.ReleaseConditions{Enclave: api.EnclaveSoftware}, ""},
		{"profile implies tpm", &api.ReleaseConditions{AttestationProfile: "prod-pcrs"}, &api.ReleaseConditions{Enclave: api.EnclaveTPM, AttestationProfile: "prod-pcrs"}, ""},
		{"age implies tpm", &api.ReleaseConditions{MaxAttestationAgeSeconds: 3600}, &api.ReleaseConditions{Enclave: api.EnclaveTPM, MaxAttestationAgeSeconds: 3600}, ""},
		{"all three", &api.ReleaseConditions{Enclave: api.EnclaveTPM, AttestationProfile: "p.1_x", MaxAttestationAgeSeconds: MaxAttestationAge},
			&api.ReleaseConditions{Enclave: api.EnclaveTPM, AttestationProfile: "p.1_x", MaxAttestationAgeSeconds: MaxAttestationAge}, ""},
		{"unknown enclave", &api.ReleaseConditions{Enclave: "sgx"}, nil, `release.enclave "sgx"`},
		{"bad profile name", &api.ReleaseConditions{AttestationProfile: "Prod PCRs"}, nil, "release.attestation_profile"},
		{"profile name too long", &api.ReleaseConditions{AttestationProfile: strings.Repeat("a", 64)}, nil, "release.attestation_profile"},
		{"negative age", &api.ReleaseConditions{MaxAttestationAgeSeconds: -1}, nil, "max_attestation_age_seconds"},
		{"age over a year", &api.ReleaseConditions{MaxAttestationAgeSeconds: MaxAttestationAge + 1}, nil, "max_attestation_age_seconds"},
		{"software with a profile", &api.ReleaseConditions{Enclave: api.EnclaveSoftware, AttestationProfile: "p"}, nil, "need enclave \"tpm\""},
		{"software with an age", &api.ReleaseConditions{Enclave: api.EnclaveSoftware, MaxAttestationAgeSeconds: 60}, nil, "need enclave \"tpm\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &api.Policy{Rules: ok, Release: tt.in}
			got, err := Normalize(in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Normalize = %v, want an ErrInvalidPolicy naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Release, tt.want) {
				t.Fatalf("Release = %+v, want %+v", got.Release, tt.want)
			}
			if tt.in != nil && got.Release == tt.in {
				t.Fatal("Normalize shares the release conditions with its input")
			}
		})
	}
}

func TestCheckRelease(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tpmFresh := Recipient{Enclave: api.EnclaveTPM, AttestedAt: now.Add(-time.Minute), Profiles: []string{"prod"}}
	tpmOld := Recipient{Enclave: api.EnclaveTPM, AttestedAt: now.Add(-2 * time.Hour), Profiles: []string{"prod"}}
	tpmNever := Recipient{Enclave: api.EnclaveTPM}
	software := Recipient{Enclave: api.EnclaveSoftware}
	defined := func(p string) bool { return p == "prod" || p == "staging" }
	tests := []struct {
		name string
		r    *api.ReleaseConditions
		to   Recipient
		want string // "" = released; else a word of the reason
	}{
		{"no conditions, software", nil, software, ""},
		{"tpm to tpm", &api.ReleaseConditions{Enclave: api.EnclaveTPM}, tpmNever, ""},
		{"tpm to software", &api.ReleaseConditions{Enclave: api.EnclaveTPM}, software, "software enclave"},
		{"tpm to unknown enclave", &api.ReleaseConditions{Enclave: api.EnclaveTPM}, Recipient{}, "unknown enclave"},
		{"software to tpm", &api.ReleaseConditions{Enclave: api.EnclaveSoftware}, tpmFresh, "the software enclave"},
		{"profile met", &api.ReleaseConditions{Enclave: api.EnclaveTPM, AttestationProfile: "prod"}, tpmFresh, ""},
		{"profile not met", &api.ReleaseConditions{Enclave: api.EnclaveTPM, AttestationProfile: "staging"}, tpmFresh, `did not satisfy attestation profile "staging"`},
		{"profile no longer defined", &api.ReleaseConditions{Enclave: api.EnclaveTPM, AttestationProfile: "gone"}, Recipient{Enclave: api.EnclaveTPM, AttestedAt: now, Profiles: []string{"gone"}}, "not defined"},
		{"never attested", &api.ReleaseConditions{Enclave: api.EnclaveTPM, MaxAttestationAgeSeconds: 3600}, tpmNever, "no verified TPM attestation"},
		{"fresh enough", &api.ReleaseConditions{Enclave: api.EnclaveTPM, MaxAttestationAgeSeconds: 3600}, tpmFresh, ""},
		{"exactly at the bound", &api.ReleaseConditions{Enclave: api.EnclaveTPM, MaxAttestationAgeSeconds: 3600}, Recipient{Enclave: api.EnclaveTPM, AttestedAt: now.Add(-time.Hour)}, ""},
		{"too old", &api.ReleaseConditions{Enclave: api.EnclaveTPM, MaxAttestationAgeSeconds: 3600}, tpmOld, "7200 s old, more than the 3600 s"},
		{"profile met but too old", &api.ReleaseConditions{Enclave: api.EnclaveTPM, AttestationProfile: "prod", MaxAttestationAgeSeconds: 3600}, tpmOld, "re-attest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRelease(tt.r, tt.to, now, defined)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckRelease = %v, want released", err)
				}
				return
			}
			if !errors.Is(err, ErrReleaseRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckRelease = %v, want ErrReleaseRefused naming %q", err, tt.want)
			}
		})
	}
	// nil defined: every profile counts as defined.
	if err := CheckRelease(&api.ReleaseConditions{Enclave: api.EnclaveTPM, AttestationProfile: "x"}, Recipient{Enclave: api.EnclaveTPM, AttestedAt: now, Profiles: []string{"x"}}, now, nil); err != nil {
		t.Fatal(err)
	}
}
