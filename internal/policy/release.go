package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/dcaas/dcaas/api"
)

// MaxAttestationAge is the largest release.max_attestation_age_seconds: a
// year. A longer bound would not be a freshness requirement.
const MaxAttestationAge = 365 * 24 * 60 * 60

// profileName is what an attestation profile may be called, in a key policy
// and in the KMS's attestation policy file.
var profileName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidProfileName reports whether s can name an attestation profile:
// 1 to 63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter
// or digit.
func ValidProfileName(s string) bool { return profileName.MatchString(s) }

// normalizeRelease checks release conditions and returns a canonical copy:
// a profile or an attestation age implies enclave "tpm"; conditions that
// ask nothing are dropped (nil).
func normalizeRelease(r *api.ReleaseConditions) (*api.ReleaseConditions, error) {
	if r == nil || *r == (api.ReleaseConditions{}) {
		return nil, nil
	}
	out := *r
	switch {
	case out.Enclave != "" && out.Enclave != api.EnclaveTPM && out.Enclave != api.EnclaveSoftware:
		return nil, fmt.Errorf("%w: release.enclave %q is neither \"tpm\" nor \"software\"", ErrInvalidPolicy, out.Enclave)
	case out.AttestationProfile != "" && !ValidProfileName(out.AttestationProfile):
		return nil, fmt.Errorf("%w: release.attestation_profile %q is not a profile name (a-z, 0-9, '.', '_', '-'; at most 63)", ErrInvalidPolicy, out.AttestationProfile)
	case out.MaxAttestationAgeSeconds < 0 || out.MaxAttestationAgeSeconds > MaxAttestationAge:
		return nil, fmt.Errorf("%w: release.max_attestation_age_seconds must be between 1 and %d (a year)", ErrInvalidPolicy, MaxAttestationAge)
	}
	attested := out.AttestationProfile != "" || out.MaxAttestationAgeSeconds > 0
	if attested {
		if out.Enclave == api.EnclaveSoftware {
			return nil, fmt.Errorf("%w: release.attestation_profile and max_attestation_age_seconds need enclave \"tpm\"; a software enclave is never attested", ErrInvalidPolicy)
		}
		out.Enclave = api.EnclaveTPM
	}
	return &out, nil
}

// Release returns p's release conditions (nil when it has none).
func Release(p *api.Policy) *api.ReleaseConditions {
	if p == nil {
		return nil
	}
	return p.Release
}

// Recipient is what the KMS knows of a sidecar a key would be released
// to: its enclave kind and its last verified attestation.
type Recipient struct {
	Enclave api.Enclave
	// AttestedAt is when its last TPM quote was verified (zero: never).
	AttestedAt time.Time
	// Profiles are the attestation profiles that quote satisfied.
	Profiles []string
}

// ErrReleaseRefused is wrapped by CheckRelease's errors; the message says
// what the sidecar lacks, in a sentence.
var ErrReleaseRefused = errors.New("the sidecar does not meet the key's release conditions")

// CheckRelease reports whether a key whose policy has release conditions
// r may be released, at now, to the sidecar to. nil r allows every
// sidecar. defined reports whether a profile is still defined by the
// KMS's attestation policy (a profile removed from it is satisfied by
// nobody); nil means every profile is. The error wraps ErrReleaseRefused
// and names what is missing; it holds no secret.
func CheckRelease(r *api.ReleaseConditions, to Recipient, now time.Time, defined func(string) bool) error {
	if r == nil {
		return nil
	}
	if r.Enclave != "" && to.Enclave != r.Enclave {
		if r.Enclave == api.EnclaveTPM {
			return fmt.Errorf("%w: the key may be released only to a sidecar enrolled with TPM attestation, and this one runs the %s enclave", ErrReleaseRefused, enclaveName(to.Enclave))
		}
		return fmt.Errorf("%w: the key may be released only to a sidecar with the %s enclave, and this one runs the %s enclave", ErrReleaseRefused, r.Enclave, enclaveName(to.Enclave))
	}
	if r.AttestationProfile == "" && r.MaxAttestationAgeSeconds == 0 {
		return nil
	}
	if to.AttestedAt.IsZero() {
		return fmt.Errorf("%w: the sidecar has no verified TPM attestation", ErrReleaseRefused)
	}
	if p := r.AttestationProfile; p != "" {
		if defined != nil && !defined(p) {
			return fmt.Errorf("%w: attestation profile %q is not defined in the KMS's attestation policy", ErrReleaseRefused, p)
		}
		if !slices.Contains(to.Profiles, p) {
			return fmt.Errorf("%w: the sidecar's last attestation did not satisfy attestation profile %q", ErrReleaseRefused, p)
		}
	}
	if max := r.MaxAttestationAgeSeconds; max > 0 {
		age := now.Sub(to.AttestedAt)
		if age > time.Duration(max)*time.Second {
			return fmt.Errorf("%w: the sidecar's last attestation is %d s old, more than the %d s the key allows; it must re-attest", ErrReleaseRefused, int64(age/time.Second), max)
		}
	}
	return nil
}

func enclaveName(e api.Enclave) string {
	if e == "" {
		return "unknown"
	}
	return string(e)
}
