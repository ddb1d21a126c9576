package kms

import (
	"context"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// reader is the part of the store that request handlers may use outside a
// transaction: reads only. Every write of a handler goes through
// call.commit or call.fail, in the transaction that also stores the
// call's audit record, so a handler cannot store a change without its
// record (the compiler checks it: KMS.st is a reader).
type reader interface {
	GetSetting(ctx context.Context, name string) ([]byte, error)
	GetTenant(ctx context.Context, name string) (store.Tenant, error)
	GetMasterKey(ctx context.Context, tenant string, version int) (store.MasterKey, error)
	GetApp(ctx context.Context, tenant, name string) (store.App, error)
	GetAppByDN(ctx context.Context, dn string) (store.App, error)
	GetCert(ctx context.Context, serial string) (store.Cert, error)
	GetCertIdentity(ctx context.Context, serial string) (store.Cert, *store.App, error)
	ListCerts(ctx context.Context, kind, tenant, subject string) ([]store.Cert, error)
	RevokedAppCerts(ctx context.Context, dn string, now time.Time) ([]string, error)
	GetKey(ctx context.Context, keyID string) (store.Key, error)
	GetKeys(ctx context.Context, keyIDs []string) (map[string]store.Key, error)
	GetKeyVersion(ctx context.Context, keyID string, version int) (store.KeyVersion, error)
	GetKeysAndVersions(ctx context.Context, refs []store.KeyRef) (map[string]store.Key, map[store.KeyRef]store.KeyVersion, error)
	ListKeyVersions(ctx context.Context, keyID string) ([]store.KeyVersion, error)
	KeysDueForRotation(ctx context.Context, now time.Time, countedType string, minEncryptions int64, limit int) ([]store.Key, error)
	ReleasedVersions(ctx context.Context, instanceID string, keyIDs []string) (map[string]int, error)
	PeekOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (store.OneTimeSecret, error)
	GetOneTime(ctx context.Context, kind string, hash []byte) (store.OneTimeSecret, error)
	GetInstance(ctx context.Context, id string) (store.Instance, error)
	ListInstances(ctx context.Context, tenant, custodianDN string) ([]store.Instance, error)
	RevocationsAfter(ctx context.Context, tenant string, after int64, limit int) ([]store.Revocation, error)
	LastRevocation(ctx context.Context) (int64, error)
	AuditAfter(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error)
	LatestAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error)
	// Quorum approvals (approvals.go).
	GetApprovalPolicy(ctx context.Context, tenant string) (store.ApprovalPolicy, error)
	ListApprovalPolicies(ctx context.Context) ([]store.ApprovalPolicy, error)
	GetApproval(ctx context.Context, id string) (store.Approval, error)
	ListApprovals(ctx context.Context, tenant, requester string, limit int) ([]store.Approval, error)
	store.Listing // reads only (listing.go)
	GetCeremony(ctx context.Context, id string) (store.Ceremony, []store.CeremonyComponent, error)
}

var _ reader = store.Tx(nil)
