// Package store defines what the KMS persists, as small per-aggregate
// interfaces, and the errors every implementation returns. The
// implementation is sqlstore/, on SQLite (the embedded default) and
// PostgreSQL; storetest/ is the one conformance suite every implementation
// must pass.
//
// Nothing stored here is a secret in clear: master keys, the tenant HMAC key
// and the CA key arrive already sealed; tokens, grants and nonces are stored
// only as hashes.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every implementation returns (wrapped or bare; test with errors.Is).
var (
	ErrNotFound    = errors.New("store: not found")
	ErrExists      = errors.New("store: already exists")
	ErrConflict    = errors.New("store: concurrent update or stale version")
	ErrUsed        = errors.New("store: already used")
	ErrExpired     = errors.New("store: expired")
	ErrUnavailable = errors.New("store: unavailable") // I/O failure, disk full, read-only
)

// Store is everything the KMS needs, in one handle.
type Store interface {
	Tx
	// Leases orders running KMS replicas and seal migrations (leases.go).
	Leases
	// InTx runs fn in one transaction and commits if fn returns nil:
	// everything fn does through tx is stored together, or, if fn returns
	// an error (returned as it is), panics or the commit fails, none of it
	// is.
	// Each method of tx keeps its own promises inside the transaction: one
	// that fails changes nothing, and after any error but ErrUnavailable
	// tx stays usable. The locks they take are held until the transaction
	// ends. fn must use only tx, not the Store, and only from its own
	// goroutine; tx must not be used after fn returns.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// Close releases the database.
	Close() error
}

// SoleWriter is implemented by a Store whose database one KMS process
// alone may write: the embedded SQLite store (docs/operations.md: it
// serves one KMS process). ClaimSoleWriter makes this handle that writer:
// it fails with ErrClaimed if another process (or another handle in this
// one) holds the claim, and holds it until release is called or the
// process ends, however it ends. While the claim holds, what this process
// has not changed is as it read it, so the KMS may remember such reads
// until it changes something itself (internal/kms/readcache.go). A store
// that replicas share (PostgreSQL), or one opened read-only, returns
// errors.ErrUnsupported.
type SoleWriter interface {
	ClaimSoleWriter() (release func(), err error)
}

// ErrClaimed: another KMS process holds the database (SoleWriter).
var ErrClaimed = errors.New("store: the database is in use by another KMS process")

// Tx is what a Store holds, seen from inside one transaction (see
// Store.InTx): the same per-aggregate interfaces.
type Tx interface {
	Settings
	Tenants
	Apps
	Certs
	Keys
	OneTime
	Instances
	Releases
	Revocations
	Audit
	Sealed
	Approvals
	Listing
	KeyCheckValues
	Ceremonies
}

// Settings is a small key/value space for KMS-wide material (the CA
// certificate, the sealed CA key).
type Settings interface {
	// GetSetting returns ErrNotFound when name is unset.
	GetSetting(ctx context.Context, name string) ([]byte, error)
	// PutSettingIfAbsent stores value under name unless name already has a
	// value; it returns the value that is stored afterwards (the caller's or
	// the one that won a race), so two replicas initializing at once agree.
	PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error)
	// SettingNames returns the names of the settings that start with
	// prefix, sorted bytewise.
	SettingNames(ctx context.Context, prefix string) ([]string, error)
	// SwapSetting stores value under name if name now holds old (old nil:
	// if name is unset), and fails with ErrConflict otherwise, changing
	// nothing: a compare-and-swap, so that of two replicas changing one
	// setting from the same value only one succeeds.
	SwapSetting(ctx context.Context, name string, old, value []byte) error
}

// Tenant is a registered tenant.
type Tenant struct {
	Name             string
	MasterKeyVersion int    // current TMK version (new EKBs use it)
	SealedHMACKey    []byte // tenant HMAC key, sealed
	CreatedAt        time.Time
}

// MasterKey is one version of a tenant master key, sealed.
type MasterKey struct {
	Tenant    string
	Version   int
	Sealed    []byte
	CreatedAt time.Time
}

// Tenants stores tenants and their master keys.
type Tenants interface {
	// CreateTenant stores t with its first master key (version 1) in one
	// transaction; ErrExists when the name is taken.
	CreateTenant(ctx context.Context, t Tenant, first MasterKey) error
	// GetTenant returns ErrNotFound for an unknown name.
	GetTenant(ctx context.Context, name string) (Tenant, error)
	// AddMasterKey stores mk and makes it current, only if mk.Version is the
	// current version + 1 (ErrConflict otherwise).
	AddMasterKey(ctx context.Context, mk MasterKey) error
	// GetMasterKey returns ErrNotFound for an unknown tenant or version.
	GetMasterKey(ctx context.Context, tenant string, version int) (MasterKey, error)
}

// App is a tenant application (custodian or pipeline), or the admin (with
// an empty Tenant).
type App struct {
	Tenant    string
	Name      string
	Role      string // api.Role values
	DN        string // normalized RFC 4514 subject DN
	CreatedAt time.Time
}

// Apps stores tenant applications.
type Apps interface {
	// CreateApp returns ErrExists when (tenant, name) is taken.
	CreateApp(ctx context.Context, a App) error
	GetApp(ctx context.Context, tenant, name string) (App, error)
	// GetAppByDN returns ErrNotFound when no app has that DN.
	GetAppByDN(ctx context.Context, dn string) (App, error)
}

// Cert kinds.
const (
	CertApp      = "app"      // Subject is the app name; Tenant its tenant
	CertInstance = "instance" // Subject is the instance id
	CertWrapping = "wrapping" // Subject is the instance id
	CertServer   = "server"
)

// Cert records a certificate the KMS CA issued: the CA's registry and its
// revocation list.
type Cert struct {
	Serial    string // lower-case hex, unique
	Kind      string
	Tenant    string
	Subject   string
	NotAfter  time.Time
	RevokedAt *time.Time
}

// Certs stores issued certificates.
type Certs interface {
	// PutCert returns ErrExists for a duplicate serial.
	PutCert(ctx context.Context, c Cert) error
	GetCert(ctx context.Context, serial string) (Cert, error)
	// GetCertIdentity is GetCert and, for an app's certificate (CertApp),
	// the app it names, in one read (what authenticating a request
	// needs); the app is nil when it no longer exists, or for another
	// kind of certificate.
	GetCertIdentity(ctx context.Context, serial string) (Cert, *App, error)
	// RevokeCertsOf marks every certificate of (kind, subject) revoked.
	RevokeCertsOf(ctx context.Context, kind, subject string, at time.Time) error
	// RevokeCert marks one certificate revoked at at. Idempotent: a
	// certificate revoked before keeps its first time. ErrNotFound for an
	// unknown serial.
	RevokeCert(ctx context.Context, serial string, at time.Time) error
	// ListCerts returns the certificates of (kind, tenant, subject),
	// revoked and expired ones included, by NotAfter then serial.
	ListCerts(ctx context.Context, kind, tenant, subject string) ([]Cert, error)
	// RevokedAppCerts returns the serials of the client certificates of
	// the app whose DN is dn that are revoked and expire after now, by
	// serial (none for an unknown DN).
	RevokedAppCerts(ctx context.Context, dn string, now time.Time) ([]string, error)
}

// Key is a data key's registry entry. It holds no key material; retained
// keys keep their EKBs in KeyVersion.
type Key struct {
	KeyID          string
	Tenant         string
	Owner          string // owner DN
	Type           string // api.KeyType values
	CurrentVersion int
	Retained       bool
	CreatedAt      time.Time
	DisabledAt     *time.Time
	// MinDecryptionVersion retires every version below it (0: none is).
	MinDecryptionVersion int
	// RotationPeriod is how long a version stays current before rotation
	// is due (0: no automatic rotation). Stored to the nanosecond.
	RotationPeriod time.Duration
}

// KeyVersion is one version of a data key.
type KeyVersion struct {
	KeyID     string
	Version   int
	EKB       []byte // only for retained keys; nil otherwise
	CreatedAt time.Time
	// Encryptions and Bytes are the version's running usage totals (see
	// AddKeyUsage); CreateKey and AddKeyVersion store the values given,
	// normally zero.
	Encryptions int64
	Bytes       int64
	// KCV is the version's key check value ("" for a key type without
	// one, or not computed yet: see Keys.SetKeyVersionKCV). Not secret.
	KCV string
}

// KeyUsage is usage to add to one key version's totals.
type KeyUsage struct {
	KeyID       string
	Version     int
	Encryptions int64
	Bytes       int64
}

// Keys stores the data-key registry.
type Keys interface {
	// CreateKey stores k and its first version (k.CurrentVersion must be 1)
	// in one transaction; ErrExists for a duplicate id.
	CreateKey(ctx context.Context, k Key, first KeyVersion) error
	GetKey(ctx context.Context, keyID string) (Key, error)
	// GetKeys returns the keys of keyIDs that exist, by id (an unknown id
	// is left out), in one statement per few hundred ids: what a batch
	// reads instead of one GetKey per item.
	GetKeys(ctx context.Context, keyIDs []string) (map[string]Key, error)
	// AddKeyVersion stores v and makes it current only if v.Version is the
	// current version + 1 (ErrConflict otherwise), and in the same
	// transaction appends a RevocationKeyRotated event for it.
	AddKeyVersion(ctx context.Context, v KeyVersion) error
	// GetKeyVersion returns ErrNotFound for an unknown id or version.
	GetKeyVersion(ctx context.Context, keyID string, version int) (KeyVersion, error)
	// GetKeysAndVersions returns the keys refs name that exist, by id,
	// and the versions refs name that exist, by ref (an unknown key or
	// version is left out), read together like GetKeys: what a release
	// batch checks.
	GetKeysAndVersions(ctx context.Context, refs []KeyRef) (map[string]Key, map[KeyRef]KeyVersion, error)
	// ListKeyVersions returns every version of a key, oldest first
	// (ErrNotFound for an unknown id).
	ListKeyVersions(ctx context.Context, keyID string) ([]KeyVersion, error)
	// DisableKey marks the key disabled at at and, in the same
	// transaction, appends a RevocationKey event for it. Idempotent: a
	// second call keeps the first time and appends nothing. ErrNotFound for
	// an unknown id.
	DisableKey(ctx context.Context, keyID string, at time.Time) error
	// SetMinDecryptionVersion raises the key's MinDecryptionVersion to
	// version and, in the same transaction, appends a RevocationKeyVersion
	// event (Subject "<key id>:<version>"). Setting the current value
	// again changes nothing and appends nothing. ErrConflict when version
	// is below the current value or above the key's CurrentVersion (or
	// below 1); ErrNotFound for an unknown id.
	SetMinDecryptionVersion(ctx context.Context, keyID string, version int, at time.Time) error
	// AddKeyUsage adds each count to its key version's totals, all in one
	// transaction, and returns how many it added. Counts naming a version
	// that does not exist, or a key of another tenant than tenant, are
	// skipped. Concurrent calls add up exactly. A total saturates at
	// math.MaxInt64 instead of overflowing.
	AddKeyUsage(ctx context.Context, tenant string, counts []KeyUsage) (int, error)
	// KeysDueForRotation lists up to limit live (not disabled) keys, by
	// key id, whose current version's EKB is stored and whose rotation is
	// due at now: the version is at least the key's RotationPeriod old, or
	// the key is of type countedType and the version has made at least
	// minEncryptions encryptions.
	KeysDueForRotation(ctx context.Context, now time.Time, countedType string, minEncryptions int64, limit int) ([]Key, error)
}

// KeyRef names one version of a key.
type KeyRef struct {
	KeyID   string
	Version int
}

// Releases records which key versions the KMS released to which sidecar
// instance: what a sidecar may later be given without its custodian (a
// rotated key's new version).
type Releases interface {
	// RecordReleases notes that each version in refs was released to the
	// instance at at. Recording one again changes nothing.
	RecordReleases(ctx context.Context, instanceID string, refs []KeyRef, at time.Time) error
	// ReleasedVersions returns, for each of keyIDs that was ever released
	// to the instance, the highest version released. Keys never released
	// to it are absent.
	ReleasedVersions(ctx context.Context, instanceID string, keyIDs []string) (map[string]int, error)
	// AddReleasedUsage is AddKeyUsage for what a sidecar instance
	// reports: it adds only counts for versions released to instanceID
	// (RecordReleases) of keys of tenant whose type is keyType, and skips
	// every other count alike.
	AddReleasedUsage(ctx context.Context, tenant, instanceID, keyType string, counts []KeyUsage) (int, error)
}

// One-time secret kinds.
const (
	OneTimeEnrollToken = "enroll_token"
	OneTimeChallenge   = "challenge"
	OneTimeGrant       = "grant"
	OneTimeImport      = "import_token"
	// OneTimeGrantRedemption records which request used a grant (the
	// grant's hash and the request's recipient key), so that very request
	// may be presented again (a retry after a lost answer).
	OneTimeGrantRedemption = "grant_redemption"
)

// OneTimeSecret is a single-use, expiring secret (enrollment token, grant,
// challenge nonce, import token), stored only as the SHA-256 of the secret.
type OneTimeSecret struct {
	Hash      []byte // SHA-256 of the secret; the primary key
	Kind      string
	Tenant    string
	Subject   string // e.g. the custodian DN a token enrolls for
	Payload   []byte // kind-specific JSON, never a secret
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
}

// OneTime stores single-use secrets.
type OneTime interface {
	// PutOneTime returns ErrExists for a duplicate hash.
	PutOneTime(ctx context.Context, s OneTimeSecret) error
	// ConsumeOneTime atomically marks the secret with this kind and hash
	// used at now and returns it, exactly once across all callers and
	// replicas. It returns ErrNotFound (unknown hash or other kind), ErrUsed
	// (used before) or ErrExpired (now >= ExpiresAt; the secret stays
	// unused), without changing anything in those cases.
	ConsumeOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (OneTimeSecret, error)
	// PeekOneTime returns the secret with this kind and hash as
	// ConsumeOneTime would, with the same errors, without marking it used.
	PeekOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (OneTimeSecret, error)
	// GetOneTime returns the secret with this kind and hash, used or
	// expired as it may be (UsedAt, ExpiresAt tell); ErrNotFound if there
	// is none.
	GetOneTime(ctx context.Context, kind string, hash []byte) (OneTimeSecret, error)
	// DeleteExpiredOneTime removes secrets that expired before cutoff.
	DeleteExpiredOneTime(ctx context.Context, cutoff time.Time) (int64, error)
}

// Instance is an enrolled sidecar.
type Instance struct {
	ID             string
	Tenant         string
	CustodianDN    string
	Enclave        string
	CertSerial     string
	WrappingSerial string
	WrappingKEM    string
	WrappingPublic []byte
	EnrolledAt     time.Time
	RevokedAt      *time.Time
	// TPM attestation (migration 0007): the attestation key the instance
	// enrolled with and what vouched for it ("allowlist", or "ek:" and a
	// manufacturer's name), when its last quote was verified and the
	// attestation profiles that quote satisfied. Empty for token-enrolled
	// instances.
	AKFingerprint       string
	AKTrust             string
	AttestedAt          *time.Time
	AttestationProfiles []string
	// What the sidecar said at its last revocation poll (migration 0010):
	// when, and how many keys it held (nil: it never said).
	LastPollAt *time.Time
	KeysLoaded *int
}

// Instances is the registry of enrolled sidecars.
type Instances interface {
	// CreateInstance returns ErrExists for a duplicate id.
	CreateInstance(ctx context.Context, in Instance) error
	GetInstance(ctx context.Context, id string) (Instance, error)
	// ListInstances lists a tenant's instances, or all when tenant is "";
	// only those bound to custodianDN when it is not "". Oldest first.
	ListInstances(ctx context.Context, tenant, custodianDN string) ([]Instance, error)
	// EnrollInstance registers in and its certificates in one transaction.
	// When tokenHash is not empty it first consumes the single-use secret
	// of tokenKind with that hash at in.EnrolledAt, in the same
	// transaction: either the secret is used and the instance registered,
	// or neither. Errors are ConsumeOneTime's, and ErrExists for a
	// duplicate instance id or certificate serial.
	EnrollInstance(ctx context.Context, tokenKind string, tokenHash []byte, in Instance, certs []Cert) error
	// RenewInstance makes certSerial and wrappingSerial the instance's
	// current certificates and registers certs, in one transaction.
	// ErrNotFound for an unknown instance, ErrConflict for a revoked one.
	RenewInstance(ctx context.Context, id, certSerial, wrappingSerial string, certs []Cert) error
	// RevokeInstance marks the instance revoked and, in the same
	// transaction, appends a RevocationInstance event for it (idempotent: a
	// second call keeps the first time and appends nothing); ErrNotFound
	// for an unknown id.
	RevokeInstance(ctx context.Context, id string, at time.Time) error
	// RecordAttestation notes a verified re-attestation of a live
	// instance: its time and the profiles the quote satisfied. It returns
	// ErrNotFound for an unknown instance and ErrConflict for a revoked
	// one.
	RecordAttestation(ctx context.Context, id string, at time.Time, profiles []string) error
	// NotePoll records a revocation poll of the instance at at, with the
	// number of keys it said it holds (negative: it did not say, and the
	// last count stays). A poll older than the one recorded changes
	// nothing (polls noted in memory and stored later may arrive after a
	// newer one). ErrNotFound for an unknown instance.
	NotePoll(ctx context.Context, id string, at time.Time, keysLoaded int) error
	// DeleteLapsedInstances deletes at most limit instances whose current
	// identity certificate expired before before, with the records of what
	// was released to them and their certificates (identity and wrapping,
	// every one they were issued), and returns them (lowest id first). Such an
	// instance can authenticate no more: a sidecar whose certificates
	// lapsed enrolls again as a new instance. Revocation events naming
	// them stay.
	DeleteLapsedInstances(ctx context.Context, before time.Time, limit int) ([]Instance, error)
}

// Revocation kinds.
const (
	RevocationInstance = "instance" // Subject is the instance id
	RevocationKey      = "key"      // Subject is the key id
	// RevocationKeyVersion: Subject is "<key id>:<min decryption version>".
	RevocationKeyVersion = "key_version"
	// RevocationKeyRotated: a new version of a key became current. Subject
	// is "<key id>:<version>". (Not a revocation: the feed also tells
	// sidecars what to fetch.)
	RevocationKeyRotated = "key_rotated"
)

// Revocation is one event of the append-only revocation feed sidecars poll.
type Revocation struct {
	Seq     int64 // assigned by the store: 1, 2, 3 … across all tenants
	Tenant  string
	Kind    string
	Subject string
	At      time.Time
}

// Revocations is the feed of revocation events.
type Revocations interface {
	// RevocationsAfter returns up to limit events of tenant with Seq >
	// after, in Seq order.
	RevocationsAfter(ctx context.Context, tenant string, after int64, limit int) ([]Revocation, error)
	// LastRevocation is the highest Seq of any tenant (0 when none), the
	// cursor a new sidecar starts from.
	LastRevocation(ctx context.Context) (int64, error)
}

// AuditRecord is one stored audit entry. Hash covers every other field
// but Sig, and PrevHash; Sig, when set, is the KMS audit key's signature
// over Hash (see internal/audit). Records written before the audit key
// existed have no Sig.
type AuditRecord struct {
	Seq      int64
	Time     time.Time
	Caller   string
	Role     string
	Action   string
	Tenant   string
	KeyID    string
	Outcome  string
	Code     string
	PrevHash []byte
	Hash     []byte
	Sig      []byte
}

// AuditSigner signs the audit record numbered seq whose hash is hash; what
// it returns is stored as the record's Sig (see Audit.AppendAudit).
type AuditSigner func(seq int64, hash []byte) []byte

// AuditCheckpoint is a signed statement that the audit log held Seq
// records, the last of which had Hash, at Time (see internal/audit). Seq 0
// is the empty log.
type AuditCheckpoint struct {
	Seq  int64
	Hash []byte
	Time time.Time
	Sig  []byte
}

// Audit is the append-only audit log and its checkpoints.
type Audit interface {
	// AppendAudit appends one record. Inside one serialized transaction it
	// reads the last record (seq 0 and a nil hash when the log is empty),
	// calls build with the next seq and the last hash, and stores what
	// build returns. Appends are totally ordered across replicas.
	//
	// With sign nil the record is stored as build returned it. With sign
	// set, the record is stored unsigned and signed when its transaction
	// commits, if it is then the last record of the log: the signature,
	// sign(seq, hash), is stored in that same transaction. Every record a
	// transaction appends is then covered, through the hash chain, by the
	// signature of its last one, and the audit key signs once per
	// transaction (on SQLite once per group commit) instead of once per
	// record. A record appended outside InTx is its transaction's only
	// one and is signed as it is stored. sign is called only with the seq
	// and hash of a record build returned, never with rows read back.
	AppendAudit(ctx context.Context, build func(seq int64, prevHash []byte) (AuditRecord, error), sign AuditSigner) (AuditRecord, error)
	// AuditAfter returns up to limit records with Seq > after, in order.
	AuditAfter(ctx context.Context, after int64, limit int) ([]AuditRecord, error)
	// LastAudit returns the record with the highest Seq; ErrNotFound when
	// the log is empty.
	LastAudit(ctx context.Context) (AuditRecord, error)
	// PutAuditCheckpoint stores cp unless a checkpoint of cp.Seq is stored
	// already, and returns the one stored afterwards (cp, or the earlier
	// one: a checkpoint is never replaced).
	PutAuditCheckpoint(ctx context.Context, cp AuditCheckpoint) (AuditCheckpoint, error)
	// LatestAuditCheckpoint returns the stored checkpoint with the highest
	// Seq; ErrNotFound when there is none.
	LatestAuditCheckpoint(ctx context.Context) (AuditCheckpoint, error)
	// DeleteAuditThrough deletes up to limit of the records numbered seq
	// or lower, lowest first, and the checkpoints of records below seq,
	// and returns how many records it deleted: pruning the start of the
	// log once it is archived (internal/audit, Start). It never deletes a
	// record above seq.
	DeleteAuditThrough(ctx context.Context, seq int64, limit int) (int64, error)
}

// ApprovalPolicy is a tenant's quorum setting (Tenant "" is never stored:
// the KMS derives the admins' policy from the tenants'). Approvers are
// normalized admin DNs.
type ApprovalPolicy struct {
	Tenant    string
	Quorum    int
	Approvers []string
	Version   int // 1 for the first, +1 per change
	UpdatedAt time.Time
}

// Approval states stored (approved and expired are derived by the KMS).
const (
	ApprovalPending   = "pending"
	ApprovalExecuted  = "executed"
	ApprovalDenied    = "denied"
	ApprovalCancelled = "cancelled"
)

// Approval is one request for a quorum's approval of an action with exact
// parameters (Params, canonical JSON; ParamsHash its SHA-256 with the
// action, tenant and key).
type Approval struct {
	ID         string
	Tenant     string // "" for admin creation
	Action     string
	KeyID      string
	Params     []byte
	ParamsHash []byte
	Requester  string
	State      string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	ClosedAt   *time.Time
	ClosedBy   string
	Votes      []ApprovalVote // read only: oldest first
}

// ApprovalVote is one approver's approval of an Approval.
type ApprovalVote struct {
	Approver string
	At       time.Time
}

// Approvals stores approval policies, requests and their votes.
type Approvals interface {
	// GetApprovalPolicy returns ErrNotFound when tenant never had one.
	GetApprovalPolicy(ctx context.Context, tenant string) (ApprovalPolicy, error)
	// ListApprovalPolicies returns every stored policy (a quorum of 0
	// included), by tenant.
	ListApprovalPolicies(ctx context.Context) ([]ApprovalPolicy, error)
	// PutApprovalPolicy stores p only if p.Version is the stored version
	// + 1 (1 when there is none); ErrConflict otherwise, so of two
	// changes made from one version only one is stored.
	PutApprovalPolicy(ctx context.Context, p ApprovalPolicy) error
	// CreateApproval stores a (State pending, no votes); ErrExists for a
	// duplicate id.
	CreateApproval(ctx context.Context, a Approval) error
	// GetApproval returns the approval with its votes; ErrNotFound.
	GetApproval(ctx context.Context, id string) (Approval, error)
	// ListApprovals returns up to limit approvals of tenant (all tenants
	// when tenant is "*") requested by requester (anyone's when ""),
	// newest first, without their votes.
	ListApprovals(ctx context.Context, tenant, requester string, limit int) ([]Approval, error)
	// DeleteApprovalsExpiredBefore deletes the approvals (with their
	// votes) whose expiry is before cutoff, whatever their state, and
	// returns how many. The audit log keeps their history.
	DeleteApprovalsExpiredBefore(ctx context.Context, cutoff time.Time) (int, error)
	// AddApprovalVote records approver's approval at now, only while the
	// approval is pending and unexpired. ErrNotFound for an unknown id,
	// ErrUsed when it is no longer pending, ErrExpired when now >=
	// ExpiresAt, ErrExists when approver approved it before; nothing
	// changes in those cases. Concurrent votes are all kept.
	AddApprovalVote(ctx context.Context, id, approver string, now time.Time) error
	// CloseApproval moves a pending, unexpired approval to state
	// (executed, denied or cancelled) at now, by by: exactly once across
	// all callers and replicas. ErrNotFound, ErrUsed (not pending) or
	// ErrExpired otherwise, changing nothing. Within a transaction, the
	// approval's row stays locked until it ends.
	CloseApproval(ctx context.Context, id, state, by string, now time.Time) error
}

// KeyCheckValues completes the key check values of key versions made
// before the KMS stored them (CreateKey and AddKeyVersion store
// KeyVersion.KCV).
type KeyCheckValues interface {
	// SetKeyVersionKCV stores kcv as the version's key check value if it
	// has none; a version that has one keeps it (a KCV is a function of
	// the key, so every replica computes the same). ErrNotFound for an
	// unknown version; ErrConflict if the stored value differs from kcv.
	SetKeyVersionKCV(ctx context.Context, keyID string, version int, kcv string) error
}

// Ceremony is a key being entered in components (split knowledge): K
// components, each entered by a different admin, whose XOR is the key.
type Ceremony struct {
	ID          string
	Tenant      string
	KeyType     string // api.KeyType values
	Components  int    // K
	ExpectedKCV string // "" when none was given
	Owner       string // the DN of the custodian that will own the key
	Request     []byte // the key's parameters (JSON), as the KMS wrote them
	CreatedBy   string // DN
	CreatedAt   time.Time
	ExpiresAt   time.Time
	KeyID       string     // the key made, once complete
	CompletedAt *time.Time // nil while components are being entered
}

// CeremonyComponent is one component entered into a Ceremony.
type CeremonyComponent struct {
	CeremonyID string
	Index      int    // 1..K, in the order they were entered
	Admin      string // the DN of the admin who entered it
	KCV        string // the component's own key check value
	Sealed     []byte // the component, sealed; nil once the ceremony completed
	EnteredAt  time.Time
}

// Ceremonies stores key-component ceremonies. Nothing in them is in
// clear: components arrive sealed.
type Ceremonies interface {
	// CreateCeremony stores c (no components, not complete); ErrExists
	// for a duplicate id.
	CreateCeremony(ctx context.Context, c Ceremony) error
	// GetCeremony returns a ceremony and its components by index
	// (ErrNotFound for an unknown id, expired or not).
	GetCeremony(ctx context.Context, id string) (Ceremony, []CeremonyComponent, error)
	// AddCeremonyComponent stores one component. ErrExists when its index
	// or its admin is taken in the ceremony; ErrNotFound for an unknown
	// ceremony; ErrConflict when the ceremony is complete or its index is
	// not the number of components stored + 1.
	AddCeremonyComponent(ctx context.Context, c CeremonyComponent) error
	// CompleteCeremony records the key made by ceremony id and clears its
	// components' sealed values. ErrConflict if it is complete already;
	// ErrNotFound for an unknown id.
	CompleteCeremony(ctx context.Context, id, keyID string, at time.Time) error
	// DeleteExpiredCeremonies deletes the ceremonies that expired before
	// now, with their components, and returns how many.
	DeleteExpiredCeremonies(ctx context.Context, now time.Time) (int, error)
}
