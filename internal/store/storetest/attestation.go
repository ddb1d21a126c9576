package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// attestationTests: a TPM instance keeps its AK, the time of its last
// verified quote and the profiles it satisfied (migration 0007), and a
// re-attestation updates the last two of a live instance only.
var attestationTests = []test{
	{"EnrollAndRecord", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		in := newInstance("i-1", "acme", "CN=a", at(0))
		in.Enclave = "tpm"
		in.AKFingerprint = "ab12"
		in.AKTrust = "ek:acme-tpm"
		first := at(time.Second)
		in.AttestedAt = &first
		in.AttestationProfiles = []string{"prod", "staging"}
		check(t, "CreateInstance", s.CreateInstance(ctx, in))
		got, err := s.GetInstance(ctx, "i-1")
		check(t, "GetInstance", err)
		if got.AKFingerprint != "ab12" || got.AKTrust != "ek:acme-tpm" || got.AttestedAt == nil || !got.AttestedAt.Equal(first) || !slices.Equal(got.AttestationProfiles, in.AttestationProfiles) {
			t.Fatalf("GetInstance = %+v, want the attestation of %+v", got, in)
		}
		check(t, "RecordAttestation", s.RecordAttestation(ctx, "i-1", at(time.Hour), []string{"prod"}))
		list, err := s.ListInstances(ctx, "acme", "")
		check(t, "ListInstances", err)
		if len(list) != 1 || !list[0].AttestedAt.Equal(at(time.Hour)) || !slices.Equal(list[0].AttestationProfiles, []string{"prod"}) || list[0].AKFingerprint != "ab12" {
			t.Fatalf("after RecordAttestation: %+v", list)
		}
		check(t, "RecordAttestation(no profile)", s.RecordAttestation(ctx, "i-1", at(2*time.Hour), nil))
		got, err = s.GetInstance(ctx, "i-1")
		check(t, "GetInstance", err)
		if got.AttestationProfiles != nil || !got.AttestedAt.Equal(at(2*time.Hour)) {
			t.Fatalf("after RecordAttestation with no profile: %+v", got)
		}
		if s.RecordAttestation(ctx, "i-1", at(3*time.Hour), []string{"a,b"}) == nil {
			t.Fatal("RecordAttestation stored a profile name with a comma")
		}
		wantErr(t, "RecordAttestation(unknown)", s.RecordAttestation(ctx, "i-9", at(time.Hour), nil), store.ErrNotFound)
		check(t, "RevokeInstance", s.RevokeInstance(ctx, "i-1", at(4*time.Hour)))
		wantErr(t, "RecordAttestation(revoked)", s.RecordAttestation(ctx, "i-1", at(5*time.Hour), nil), store.ErrConflict)
	}},
	{"TokenInstanceUnattested", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateInstance", s.CreateInstance(ctx, newInstance("i-1", "acme", "CN=a", at(0))))
		got, err := s.GetInstance(ctx, "i-1")
		check(t, "GetInstance", err)
		if got.AKFingerprint != "" || got.AKTrust != "" || got.AttestedAt != nil || got.AttestationProfiles != nil {
			t.Fatalf("a token-enrolled instance reads attested: %+v", got)
		}
	}},
	{"NotePoll", func(t *testing.T, s store.Store) {
		ctx := t.Context()
		check(t, "CreateInstance", s.CreateInstance(ctx, newInstance("i-1", "acme", "CN=a", at(0))))
		got, err := s.GetInstance(ctx, "i-1")
		check(t, "GetInstance", err)
		if got.LastPollAt != nil || got.KeysLoaded != nil {
			t.Fatalf("a new instance has a poll: %+v", got)
		}
		check(t, "NotePoll", s.NotePoll(ctx, "i-1", at(time.Minute), 3))
		check(t, "NotePoll(no count)", s.NotePoll(ctx, "i-1", at(2*time.Minute), -1))
		list, err := s.ListInstances(ctx, "acme", "")
		check(t, "ListInstances", err)
		if len(list) != 1 || list[0].LastPollAt == nil || !list[0].LastPollAt.Equal(at(2*time.Minute)) || list[0].KeysLoaded == nil || *list[0].KeysLoaded != 3 {
			t.Fatalf("after two polls (3 keys, then no count): %+v", list)
		}
		check(t, "NotePoll(0 keys)", s.NotePoll(ctx, "i-1", at(3*time.Minute), 0))
		got, err = s.GetInstance(ctx, "i-1")
		check(t, "GetInstance", err)
		if got.KeysLoaded == nil || *got.KeysLoaded != 0 {
			t.Fatalf("after a poll with no keys: %+v", got)
		}
		// An older poll, stored late, moves nothing back.
		check(t, "NotePoll(older)", s.NotePoll(ctx, "i-1", at(time.Minute), 7))
		got, err = s.GetInstance(ctx, "i-1")
		check(t, "GetInstance", err)
		if got.LastPollAt == nil || !got.LastPollAt.Equal(at(3*time.Minute)) || got.KeysLoaded == nil || *got.KeysLoaded != 0 {
			t.Fatalf("after an older poll: %+v, want the poll at 3 min with 0 keys", got)
		}
		wantErr(t, "NotePoll(unknown)", s.NotePoll(ctx, "i-9", at(time.Minute), 1), store.ErrNotFound)
	}},
}
