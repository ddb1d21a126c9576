package kms

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// namePattern is what tenant and app names look like: they become DN
// attribute values, so they stay free of DN syntax.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

func checkName(what, name string) error {
	if !namePattern.MatchString(name) {
		return api.Errorf(api.CodeInvalidArgument, "The %s name %q is not valid: use 1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit.", what, name)
	}
	return nil
}

// Associated data that binds each sealed item to its place, so a database
// reader cannot swap one tenant's master key for another's.
func tmkAAD(tenant string, version int) []byte {
	return []byte("dcaas/v1 tmk\x00" + tenant + "\x00" + strconv.Itoa(version))
}

func hmacKeyAAD(tenant string) []byte { return []byte("dcaas/v1 tenant-hmac\x00" + tenant) }

func (k *KMS) createTenant(ctx context.Context, c *call) (any, error) {
	var req api.CreateTenantRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := checkName("tenant", req.Name); err != nil {
		return nil, err
	}
	if req.Name == adminOrg {
		return nil, api.Errorf(api.CodeInvalidArgument, "The tenant name %q is reserved: it is the organization of the KMS's admins.", adminOrg)
	}
	c.tenant = req.Name
	now := k.now()
	tmk := secret.New(kcrypto.Random(32))
	defer tmk.Wipe()
	hk := secret.New(kcrypto.Random(32))
	defer hk.Wipe()
	sealedTMK, err := k.sealer.Seal(ctx, tmk, tmkAAD(req.Name, 1))
	if err != nil {
		return nil, sealErr(err)
	}
	sealedHK, err := k.sealer.Seal(ctx, hk, hmacKeyAAD(req.Name))
	if err != nil {
		return nil, sealErr(err)
	}
	t := store.Tenant{Name: req.Name, MasterKeyVersion: 1, SealedHMACKey: sealedHK, CreatedAt: now}
	mk := store.MasterKey{Tenant: req.Name, Version: 1, Sealed: sealedTMK, CreatedAt: now}
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := tx.CreateTenant(ctx, t, mk); err != nil {
			if errors.Is(err, store.ErrExists) {
				return api.Errorf(api.CodeConflict, "Tenant %q already exists.", req.Name)
			}
			return storeErr(err, "tenant")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return api.Tenant{Name: req.Name, MasterKeyVersion: 1}, nil
}

func (k *KMS) rotateMasterKey(ctx context.Context, c *call) (any, error) {
	name := c.r.PathValue("tenant")
	c.tenant = name
	if err := c.decodeOptional(); err != nil {
		return nil, err
	}
	use, err := k.approvalFor(ctx, c, api.ApprovalRotateMasterKey, name, "", nil)
	if err != nil {
		return nil, err
	}
	// Two admins rotating at once: one wins, the other retries on top of it.
	for attempt := 0; attempt < 3; attempt++ {
		t, err := k.st.GetTenant(ctx, name)
		if err != nil {
			return nil, storeErr(err, "tenant")
		}
		next := t.MasterKeyVersion + 1
		tmk := secret.New(kcrypto.Random(32))
		sealed, err := k.sealer.Seal(ctx, tmk, tmkAAD(name, next))
		tmk.Wipe()
		if err != nil {
			return nil, sealErr(err)
		}
		mk := store.MasterKey{Tenant: name, Version: next, Sealed: sealed, CreatedAt: k.now()}
		conflict := false
		err = c.commit(ctx, func(tx store.Tx) error {
			if err := use.consumeIn(ctx, tx); err != nil {
				return err
			}
			err := tx.AddMasterKey(ctx, mk)
			conflict = errors.Is(err, store.ErrConflict)
			if err != nil {
				return storeErr(err, "tenant")
			}
			return nil
		})
		if conflict {
			continue
		}
		if err != nil {
			return nil, err
		}
		return api.RotateMasterKeyResponse{MasterKeyVersion: next}, nil
	}
	return nil, api.Errorf(api.CodeConflict, "The master key of tenant %q is being rotated concurrently; retry.", name)
}

// masterKey returns a copy of the unsealed master key (tenant, version),
// which the caller owns and wipes. The KMS remembers an unsealed master
// key for tmkCacheTTL after it was opened (tmkcache.go); past that it
// opens it again through the root of trust.
func (k *KMS) masterKey(ctx context.Context, tenant string, version int) (*secret.Bytes, error) {
	id := tmkID{tenant, version}
	if b := k.tmks.get(id, k.now()); b != nil {
		return b, nil
	}
	mk, err := k.st.GetMasterKey(ctx, tenant, version)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, errNoMasterKey
		}
		return nil, storeErr(err, "master key")
	}
	b, err := k.sealer.Open(ctx, mk.Sealed, tmkAAD(tenant, version))
	if err != nil {
		return nil, sealErr(err)
	}
	return k.tmks.put(id, b, k.now()), nil
}

var errNoMasterKey = errors.New("kms: no such master key")

// tenantHMACKey returns the unsealed HMAC key of the tenant named tenant;
// the caller wipes it.
func (k *KMS) tenantHMACKey(ctx context.Context, tenant string) (*secret.Bytes, error) {
	t, err := k.st.GetTenant(ctx, tenant)
	if err != nil {
		return nil, storeErr(err, "tenant")
	}
	b, err := k.sealer.Open(ctx, t.SealedHMACKey, hmacKeyAAD(t.Name))
	if err != nil {
		return nil, sealErr(err)
	}
	return b, nil
}

// sealErr maps a root-of-trust failure: a blob that does not open means the
// database and the root key disagree (tampering or a wrong root key).
func sealErr(err error) error {
	return &wrapped{api.Errorf(api.CodeUnavailable, "The KMS root of trust could not seal or open its material."), fmt.Errorf("%w: %w", errSeal, err)}
}

// errSeal marks the errors of sealErr, which the KMS logs (health.go).
var errSeal = errors.New("kms: seal")

// decodeOptional accepts an empty body or an empty JSON object, for
// endpoints that take no parameters.
func (c *call) decodeOptional() error {
	if c.r.ContentLength == 0 {
		return nil
	}
	var empty struct{}
	return c.decode(&empty)
}
