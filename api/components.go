package api

import "time"

// Key import by components (split knowledge, ANSI X9.24-1): a key is
// entered as K components, each by a different admin, and is their XOR.

// StartComponentsRequest is the body of POST /v1/key-components: start
// entering a key in components. A custodian starts one for itself (Tenant
// and Owner may be left out or name itself); an admin names the tenant and
// the owner. The key's parameters are those of POST /v1/datakeys, the
// embedded CreateDataKeyRequest, whose fields sit beside these in the JSON.
type StartComponentsRequest struct {
	Tenant string `json:"tenant,omitempty"`
	// Components is K, the number of components: 2 to 9.
	Components int `json:"components"`
	// ExpectedKCV, if set, is the key check value the finished key must
	// have (six hex digits); the last component is refused otherwise.
	ExpectedKCV string `json:"expected_kcv,omitempty"`
	// Owner is the name of the custodian app of Tenant that will own the
	// key (admins: required; custodians: itself).
	Owner string `json:"owner,omitempty"`
	CreateDataKeyRequest
}

// AddComponentRequest is the body of POST /v1/key-components/{id}: one
// component, entered by an admin who has entered none of this key.
// Component is secret: the clear component in hex (as long as the key);
// the KMS wipes the decoded bytes after use, but this string, like any Go
// string, cannot be wiped.
// KCV is the component's own key check value, which the KMS checks
// before it accepts the component.
type AddComponentRequest struct {
	Component string `json:"component"`
	KCV       string `json:"kcv"`
}

// Ceremony states.
const (
	CeremonyCollecting = "collecting" // waiting for components
	CeremonyComplete   = "complete"   // the key is made: KeyID
)

// ComponentCeremony is a key being entered in components: what
// POST /v1/key-components, POST /v1/key-components/{id} and
// GET /v1/key-components/{id} answer. It never holds a component.
type ComponentCeremony struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	Type        KeyType   `json:"type"`
	Components  int       `json:"components"`
	ExpectedKCV string    `json:"expected_kcv,omitempty"`
	Owner       string    `json:"owner"` // DN
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	State       string    `json:"state"`
	// Entered lists the components entered so far, by index: who entered
	// each and its KCV.
	Entered []EnteredComponent `json:"entered"`
	// KeyID and KCV name the key made, once State is complete.
	KeyID string `json:"key_id,omitempty"`
	KCV   string `json:"kcv,omitempty"`
	// DataKey is the key made (with its EKB), shown to its owner only,
	// once State is complete.
	DataKey *DataKey `json:"datakey,omitempty"`
}

// EnteredComponent is one component of a ComponentCeremony.
type EnteredComponent struct {
	Index     int       `json:"index"`
	Admin     string    `json:"admin"` // DN
	KCV       string    `json:"kcv"`
	EnteredAt time.Time `json:"entered_at"`
}
