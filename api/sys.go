package api

// Seal state of a KMS whose root key exists only as unseal key shares
// (`dcaas seal init`): GET /v1/sys/seal-status and POST /v1/sys/unseal.

// UnsealRequest posts one unseal key share: the contents of a share file
// `dcaas seal init` wrote (comment lines and whitespace are ignored).
type UnsealRequest struct {
	Share string `json:"share"`
}

// SealStatus says whether this KMS process is sealed and, when its root
// key is split into shares, how far unsealing has got. Each replica has
// its own: a replica unseals independently.
type SealStatus struct {
	// Sealed is true until Threshold distinct shares of the share set
	// opened the root key in this process.
	Sealed bool `json:"sealed"`
	// ShareSet identifies the split (32 hex digits, printed in every
	// share file); empty when the root key is not split into shares.
	ShareSet string `json:"share_set,omitempty"`
	// Threshold is how many distinct shares open the root key; Shares how
	// many were made. 0 when the root key is not split.
	Threshold int `json:"threshold"`
	Shares    int `json:"shares"`
	// Progress is how many distinct shares were posted towards the next
	// unseal attempt (0 once unsealed).
	Progress int `json:"progress"`
	// Posted lists the numbers of the shares posted so far (never their
	// values), so custodians see who is still to come.
	Posted []int `json:"posted,omitempty"`
}
