package kms

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// Key import by components (split knowledge, ANSI X9.24-1). A custodian or
// an admin starts a ceremony for a key of a symmetric type: its tenant,
// owner, parameters and number of components K. K admins then each enter
// one component in clear (over mTLS) with the component's KCV, which the
// KMS checks before it accepts it; no admin enters two. Until the K-th,
// the components are stored only sealed, each in an EKB under the
// tenant's master key (so a root seal migration does not touch them). The
// K-th makes the key, their XOR, checks it against the expected KCV if one
// was given, and registers it exactly as an import does, owned by the
// owner, who reads it (with its EKB) from the ceremony. Each step is
// audited (never a component), and a ceremony is gone ComponentsTTL
// after it started.

const (
	ceremonyPrefix = "kcm_"
	minComponents  = 2
	maxComponents  = 9
)

func (k *KMS) componentRoutes() {
	both := []api.Role{api.RoleCustodian, api.RoleAdmin}
	k.handle("POST /v1/key-components", "datakey.components.start", both, 0, k.startComponents)
	k.handle("GET /v1/key-components/{id}", "datakey.components.read", both, 0, k.readComponents)
	k.handle("POST /v1/key-components/{id}", "datakey.components.add", []api.Role{api.RoleAdmin}, 0, k.addComponent)
}

// componentTypes lists the key types that can be entered in components.
func componentTypes() string {
	var names []string
	for t, st := range symmetricTypes {
		if st.components {
			names = append(names, string(t))
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// ceremonyOwner resolves who starts a ceremony for which tenant and owner:
// a custodian for itself in its tenant, an admin for a named custodian of
// a named tenant. It returns the tenant and the owner's DN.
func (k *KMS) ceremonyOwner(ctx context.Context, who *caller, req *api.StartComponentsRequest) (string, string, error) {
	if who.Role == api.RoleCustodian {
		if req.Tenant != "" && req.Tenant != who.Tenant {
			return "", "", api.Errorf(api.CodeWrongTenant, "A custodian may import keys only into its own tenant.")
		}
		if req.Owner != "" && req.Owner != who.Name {
			return "", "", api.Errorf(api.CodeForbidden, "A custodian may start a key-component import only for itself; an admin can name another owner.")
		}
		return who.Tenant, who.DN, nil
	}
	if req.Tenant == "" || req.Owner == "" {
		return "", "", api.Errorf(api.CodeInvalidArgument, "tenant and owner (the name of the custodian app that will own the key) are required.")
	}
	if _, err := k.st.GetTenant(ctx, req.Tenant); err != nil {
		return "", "", storeErr(err, "tenant")
	}
	app, err := k.st.GetApp(ctx, req.Tenant, req.Owner)
	if errors.Is(err, store.ErrNotFound) || err == nil && app.Role != string(api.RoleCustodian) {
		return "", "", api.Errorf(api.CodeInvalidArgument, "Tenant %q has no custodian app %q to own the key.", req.Tenant, req.Owner)
	}
	if err != nil {
		return "", "", storeErr(err, "application")
	}
	return req.Tenant, app.DN, nil
}

// startComponents serves POST /v1/key-components.
func (k *KMS) startComponents(ctx context.Context, c *call) (any, error) {
	var req api.StartComponentsRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if st, ok := symmetricTypes[req.Type]; !ok || !st.components {
		return nil, api.Errorf(api.CodeInvalidArgument, "Key type %q cannot be entered in components; these can: %s.", req.Type, componentTypes())
	}
	if req.Components < minComponents || req.Components > maxComponents {
		return nil, api.Errorf(api.CodeInvalidArgument, "components must be between %d and %d.", minComponents, maxComponents)
	}
	var expected string
	if req.ExpectedKCV != "" {
		var err error
		if expected, err = parseKCV("expected_kcv", req.ExpectedKCV); err != nil {
			return nil, err
		}
	}
	tenant, owner, err := k.ceremonyOwner(ctx, c.caller, &req)
	if err != nil {
		return nil, err
	}
	c.tenant = tenant
	params := req.CreateDataKeyRequest
	now := k.now()
	// The key's parameters are checked now, and again when the last
	// component makes the key.
	if _, err := k.newMetadata(&caller{DN: owner, Tenant: tenant}, params, now); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	cr := store.Ceremony{
		ID: kcrypto.RandomID(ceremonyPrefix), Tenant: tenant, KeyType: string(req.Type), Components: req.Components,
		ExpectedKCV: expected, Owner: owner, Request: raw, CreatedBy: c.caller.DN,
		CreatedAt: now, ExpiresAt: now.Add(k.cfg.ComponentsTTL),
	}
	c.keyID = cr.ID
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := tx.CreateCeremony(ctx, cr); err != nil {
			return storeErr(err, "key-component ceremony")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ceremonyView(cr, nil), nil
}

// ceremony reads the ceremony named in the path for c: any admin, or the
// owner of the key it makes (to anyone else it does not exist). An expired
// ceremony is refused.
func (k *KMS) ceremony(ctx context.Context, c *call) (store.Ceremony, []store.CeremonyComponent, error) {
	id := c.r.PathValue("id")
	c.keyID = id
	notFound := api.Errorf(api.CodeNotFound, "There is no key-component ceremony %q.", id)
	cr, comps, err := k.st.GetCeremony(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return cr, nil, notFound
	}
	if err != nil {
		return cr, nil, storeErr(err, "key-component ceremony")
	}
	if c.caller.Role != api.RoleAdmin && (cr.Tenant != c.caller.Tenant || cr.Owner != c.caller.DN) {
		return cr, nil, notFound
	}
	c.tenant = cr.Tenant
	if !k.now().Before(cr.ExpiresAt) {
		return cr, nil, api.Errorf(api.CodeExpired, "Key-component ceremony %s expired at %s; start a new one.", id, cr.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return cr, comps, nil
}

// readComponents serves GET /v1/key-components/{id}: the progress, and,
// for the owner once it is complete, the key.
func (k *KMS) readComponents(ctx context.Context, c *call) (any, error) {
	cr, comps, err := k.ceremony(ctx, c)
	if err != nil {
		return nil, err
	}
	view := ceremonyView(cr, comps)
	if cr.KeyID == "" {
		return view, nil
	}
	v, err := k.st.GetKeyVersion(ctx, cr.KeyID, 1)
	if err != nil {
		return nil, storeErr(err, "key")
	}
	view.KCV = v.KCV
	if c.caller.DN == cr.Owner && v.EKB != nil {
		e, err := format.ParseEKB(v.EKB)
		if err != nil {
			return nil, err
		}
		var md api.KeyMetadata
		if err := json.Unmarshal(e.Metadata, &md); err != nil {
			return nil, err
		}
		view.DataKey = &api.DataKey{KeyID: cr.KeyID, Version: 1, EKB: v.EKB, Metadata: md, KCV: v.KCV}
	}
	return view, nil
}

// addComponent serves POST /v1/key-components/{id}: one admin's
// component; the last one makes the key.
func (k *KMS) addComponent(ctx context.Context, c *call) (any, error) {
	var req api.AddComponentRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	cr, comps, err := k.ceremony(ctx, c)
	if err != nil {
		return nil, err
	}
	if cr.CompletedAt != nil {
		return nil, api.Errorf(api.CodeConflict, "Key-component ceremony %s is complete: it made key %s.", cr.ID, cr.KeyID)
	}
	for _, p := range comps {
		if p.Admin == c.caller.DN {
			return nil, api.Errorf(api.CodeDuplicateAdmin, "You entered component %d of this key already; each component must be entered by a different admin.", p.Index)
		}
	}
	typ := api.KeyType(cr.KeyType)
	comp, err := parseComponent(typ, req.Component)
	if err != nil {
		return nil, err
	}
	defer comp.Wipe()
	given, err := parseKCV("kcv", req.KCV)
	if err != nil {
		return nil, err
	}
	kcv, err := kcvOf(typ, comp)
	if err != nil {
		return nil, err
	}
	if kcv != given {
		return nil, api.Errorf(api.CodeKCVMismatch, "The component does not have the key check value %s: it was not accepted (the ceremony keeps its %d components); check the component and its KCV and enter it again.", given, len(comps))
	}
	entry := store.CeremonyComponent{CeremonyID: cr.ID, Index: len(comps) + 1, Admin: c.caller.DN, KCV: kcv, EnteredAt: k.now()}
	if entry.Index < cr.Components {
		if entry.Sealed, err = k.sealComponent(ctx, cr, entry.Index, comp); err != nil {
			return nil, err
		}
		err = c.commit(ctx, func(tx store.Tx) error { return addCeremonyComponent(ctx, tx, entry) })
		if err != nil {
			return nil, err
		}
		return ceremonyView(cr, append(comps, entry)), nil
	}
	return k.completeCeremony(ctx, c, cr, comps, entry, comp)
}

// parseComponent decodes a component given in hex for a key of type t.
func parseComponent(t api.KeyType, s string) (*secret.Bytes, error) {
	size := symmetricTypes[t].size
	if len(s) != 2*size {
		return nil, api.Errorf(api.CodeInvalidArgument, "component must be the %d-byte component in hex (%d hex digits).", size, 2*size)
	}
	b := make([]byte, size)
	if _, err := hex.Decode(b, []byte(s)); err != nil {
		clear(b)
		return nil, api.Errorf(api.CodeInvalidArgument, "component must be the %d-byte component in hex (%d hex digits).", size, 2*size)
	}
	return secret.New(b), nil
}

// addCeremonyComponent stores entry through tx; a component stored by
// another admin at the same time is a conflict to retry.
func addCeremonyComponent(ctx context.Context, tx store.Ceremonies, entry store.CeremonyComponent) error {
	err := tx.AddCeremonyComponent(ctx, entry)
	switch {
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict):
		return api.Errorf(api.CodeConflict, "Another component of this key was entered at the same time; enter yours again.")
	case err != nil:
		return storeErr(err, "key component")
	}
	return nil
}

// componentMetadata is what a sealed component's EKB binds.
type componentMetadata struct {
	Ceremony string `json:"ceremony"`
	Index    int    `json:"index"`
	Purpose  string `json:"purpose"`
}

const componentPurpose = "key-component"

// sealComponent seals component index of cr into an EKB under the tenant's
// current master key.
func (k *KMS) sealComponent(ctx context.Context, cr store.Ceremony, index int, comp *secret.Bytes) ([]byte, error) {
	t, err := k.st.GetTenant(ctx, cr.Tenant)
	if err != nil {
		return nil, storeErr(err, "tenant")
	}
	tmk, err := k.masterKey(ctx, cr.Tenant, t.MasterKeyVersion)
	if err != nil {
		return nil, err
	}
	defer tmk.Wipe()
	md, err := json.Marshal(componentMetadata{Ceremony: cr.ID, Index: index, Purpose: componentPurpose})
	if err != nil {
		return nil, err
	}
	e := &format.EKB{Tenant: cr.Tenant, TMKVersion: uint32(t.MasterKeyVersion), KeyID: cr.ID, KeyVersion: uint32(index), Metadata: md}
	if err := kcrypto.SealEKB(tmk, e, comp); err != nil {
		return nil, err
	}
	return e.Marshal(), nil
}

// openComponent opens a component sealComponent sealed for cr.
func (k *KMS) openComponent(ctx context.Context, cr store.Ceremony, p store.CeremonyComponent) (*secret.Bytes, error) {
	broken := api.Errorf(api.CodeInternal, "Component %d of key-component ceremony %s does not open.", p.Index, cr.ID)
	e, err := format.ParseEKB(p.Sealed)
	if err != nil || e.Tenant != cr.Tenant || e.KeyID != cr.ID || int(e.KeyVersion) != p.Index {
		return nil, broken
	}
	tmk, err := k.masterKey(ctx, cr.Tenant, int(e.TMKVersion))
	if err != nil {
		return nil, err
	}
	comp, err := kcrypto.OpenEKB(tmk, e)
	tmk.Wipe()
	if err != nil {
		return nil, broken
	}
	var md componentMetadata
	if err := json.Unmarshal(e.Metadata, &md); err != nil || md != (componentMetadata{Ceremony: cr.ID, Index: p.Index, Purpose: componentPurpose}) {
		comp.Wipe()
		return nil, broken
	}
	return comp, nil
}

// completeCeremony makes the key from the stored components and last, the
// K-th, checks it and registers it as an import does, with last and the
// ceremony's completion, in one transaction.
func (k *KMS) completeCeremony(ctx context.Context, c *call, cr store.Ceremony, comps []store.CeremonyComponent, last store.CeremonyComponent, comp *secret.Bytes) (any, error) {
	parts := make([]*secret.Bytes, 0, len(comps)+1)
	defer func() {
		for _, p := range parts {
			p.Wipe()
		}
	}()
	for _, p := range comps {
		b, err := k.openComponent(ctx, cr, p)
		if err != nil {
			return nil, err
		}
		parts = append(parts, b)
	}
	parts = append(parts, secret.Copy(comp.Expose()))
	material, err := kcrypto.XORComponents(parts)
	if err != nil {
		return nil, err
	}
	defer material.Wipe()
	typ := api.KeyType(cr.KeyType)
	if err := kcrypto.CheckMaterial(typ, material); err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "The components do not make a valid %s key: %v", typ, err)
	}
	kcv, err := kcvOf(typ, material)
	if err != nil {
		return nil, err
	}
	if cr.ExpectedKCV != "" && kcv != cr.ExpectedKCV {
		return nil, api.Errorf(api.CodeKCVMismatch, "The key the %d components make has key check value %s, not the expected %s: no key was created, and the ceremony keeps its first %d components (the last one can be entered again).", cr.Components, kcv, cr.ExpectedKCV, len(comps))
	}
	var params api.CreateDataKeyRequest
	if err := json.Unmarshal(cr.Request, &params); err != nil {
		return nil, err
	}
	md, err := k.newMetadata(&caller{DN: cr.Owner, Tenant: cr.Tenant}, params, k.now())
	if err != nil {
		return nil, err
	}
	md.Labels = withLabel(md.Labels, "dcaas.origin", "components")
	dk, key, v, err := k.newKey(ctx, cr.Tenant, md, material, params.Retain)
	if err != nil {
		return nil, err
	}
	c.keyID = key.KeyID
	now := k.now()
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := addCeremonyComponent(ctx, tx, last); err != nil {
			return err
		}
		if err := createKey(ctx, tx, key, v); err != nil {
			return err
		}
		if err := tx.CompleteCeremony(ctx, cr.ID, key.KeyID, now); err != nil {
			return storeErr(err, "key-component ceremony")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k.mx.created.WithLabelValues(key.Type).Inc()
	k.log.Info("key imported by components", "ceremony", cr.ID, "key", key.KeyID, "components", cr.Components, "kcv", dk.KCV)
	cr.KeyID, cr.CompletedAt = key.KeyID, &now
	view := ceremonyView(cr, append(comps, last))
	view.KCV = dk.KCV
	return view, nil
}

// ceremonyView is the API view of a ceremony: never a component.
func ceremonyView(cr store.Ceremony, comps []store.CeremonyComponent) *api.ComponentCeremony {
	v := &api.ComponentCeremony{
		ID: cr.ID, Tenant: cr.Tenant, Type: api.KeyType(cr.KeyType), Components: cr.Components, ExpectedKCV: cr.ExpectedKCV,
		Owner: cr.Owner, CreatedBy: cr.CreatedBy, CreatedAt: cr.CreatedAt.UTC(), ExpiresAt: cr.ExpiresAt.UTC(),
		State: api.CeremonyCollecting, Entered: make([]api.EnteredComponent, 0, len(comps)), KeyID: cr.KeyID,
	}
	if cr.CompletedAt != nil {
		v.State = api.CeremonyComplete
	}
	for _, p := range comps {
		v.Entered = append(v.Entered, api.EnteredComponent{Index: p.Index, Admin: p.Admin, KCV: p.KCV, EnteredAt: p.EnteredAt.UTC()})
	}
	return v
}

// sweepCeremonies deletes expired ceremonies (the janitor's job).
func (k *KMS) sweepCeremonies(ctx context.Context) {
	n, err := k.db.DeleteExpiredCeremonies(ctx, k.now())
	switch {
	case err != nil && ctx.Err() == nil:
		k.log.Warn("deleting expired key-component ceremonies failed", "err", err)
	case n > 0:
		k.log.Debug("deleted expired key-component ceremonies", "count", n)
	}
}
