package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

type keyOutput struct {
	KeyID        string      `json:"key_id"`
	Version      int         `json:"version"`
	Type         api.KeyType `json:"type"`
	EKBFile      string      `json:"ekb_file"`
	PublicKeyPEM string      `json:"public_key_pem,omitempty"`
}

func storeKey(store client.EKBStore, dk *api.DataKey) (keyOutput, error) {
	if err := store.Put(dk.KeyID, dk.Version, dk.EKB); err != nil {
		return keyOutput{}, err
	}
	return keyOutput{
		KeyID: dk.KeyID, Version: dk.Version, Type: dk.Metadata.Type, PublicKeyPEM: dk.PublicKeyPEM,
		EKBFile: filepath.Join(store.Dir, dk.KeyID+".v"+strconv.Itoa(dk.Version)+".ekb"),
	}, nil
}

func printKey(w io.Writer, o keyOutput) {
	fmt.Fprintf(w, "%s version %d (%s): EKB stored in %s\n", o.KeyID, o.Version, o.Type, o.EKBFile)
	if o.PublicKeyPEM != "" {
		fmt.Fprint(w, o.PublicKeyPEM)
	}
}

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Create, version and disable data keys; their EKBs live in an EKB store"}
	c := connFlags(cmd)

	var store string
	var typ string
	var params keyParams
	create := &cobra.Command{
		Use:   "create",
		Short: "Have the KMS generate a data key and store its EKB",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.CreateDataKeyRequest{Type: api.KeyType(typ)}
			if err := params.apply(&req); err != nil {
				return err
			}
			return kmsCall(cmd, c, func(k *client.KMS) (keyOutput, error) {
				dk, err := k.CreateDataKey(cmd.Context(), req)
				if err != nil {
					return keyOutput{}, err
				}
				out, err := storeKey(client.EKBStore{Dir: store}, dk)
				if err != nil {
					return out, fmt.Errorf("key %s was created but its EKB could not be stored: %w", dk.KeyID, err)
				}
				return out, nil
			}, printKey)
		},
	}
	fl := create.Flags()
	ekbStoreFlag(create, &store)
	fl.StringVar(&typ, "type", string(api.KeyAES256GCM), "aes-256-gcm, hmac-sha256, ed25519, ecdsa-p256, ml-dsa-65 or aes-256-kbpk")
	params.flags(fl)

	var vstore string
	version := &cobra.Command{
		Use:   "version KEY_ID",
		Short: "Make a new version of a key from its latest stored EKB, and store it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st := client.EKBStore{Dir: vstore}
			_, ekb, err := st.Latest(args[0])
			if err != nil {
				return err
			}
			return kmsCall(cmd, c, func(k *client.KMS) (keyOutput, error) {
				dk, err := k.NewKeyVersion(cmd.Context(), args[0], ekb)
				if err != nil {
					return keyOutput{}, err
				}
				out, err := storeKey(st, dk)
				if err != nil {
					return out, fmt.Errorf("version %d of %s was created but its EKB could not be stored: %w", dk.Version, dk.KeyID, err)
				}
				return out, nil
			}, printKey)
		},
	}
	ekbStoreFlag(version, &vstore)

	disable := &cobra.Command{
		Use:   "disable KEY_ID",
		Short: "Disable a key everywhere: the KMS releases it no more and sidecars evict it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return kmsCall(cmd, c, func(k *client.KMS) (map[string]any, error) {
				return map[string]any{"key_id": args[0], "disabled": true}, k.DisableKey(cmd.Context(), args[0])
			}, func(w io.Writer, _ map[string]any) {
				fmt.Fprintf(w, "key %s disabled\n", args[0])
			})
		},
	}

	var lstore string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the EKBs in the store (offline)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vs, err := client.EKBStore{Dir: lstore}.List()
			if err != nil {
				return err
			}
			if vs == nil {
				vs = []client.EKBVersion{}
			}
			type item struct {
				KeyID   string `json:"key_id"`
				Version int    `json:"version"`
			}
			items := make([]item, len(vs))
			for i, v := range vs {
				items[i] = item{v.KeyID, v.Version}
			}
			return c.print(cmd, map[string]any{"ekbs": items}, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tVERSION")
				for _, v := range vs {
					fmt.Fprintf(tw, "%s\t%d\n", v.KeyID, v.Version)
				}
				tw.Flush()
			})
		},
	}
	ekbStoreFlag(list, &lstore)

	cmd.AddCommand(create, version, disable, list, newComponentsCmd(c))
	return cmd
}

// readPolicy reads a key policy from inline JSON or a file.
func readPolicy(arg string) (*api.Policy, error) {
	raw := []byte(arg)
	if !strings.HasPrefix(strings.TrimSpace(arg), "{") {
		b, err := os.ReadFile(arg)
		if err != nil {
			return nil, fmt.Errorf("--policy: %w", err)
		}
		raw = b
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var p api.Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	return &p, nil
}

// parseExpiry reads an RFC 3339 time or a duration from now.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("--expires %q: want an RFC 3339 time or a positive duration", s)
	}
	return now.Add(d).UTC().Truncate(time.Second), nil
}

// ekbSource names EKBs on the command line: files, keys of an EKB store
// (every stored version), or the whole store.
type ekbSource struct {
	store string
	files []string
	keys  []string
	all   bool
}

func (s *ekbSource) flags(cmd *cobra.Command) {
	ekbStoreFlag(cmd, &s.store)
	cmd.Flags().StringArrayVar(&s.files, "ekb", nil, "an EKB file (repeatable)")
	cmd.Flags().StringArrayVar(&s.keys, "key-id", nil, "a key in the EKB store: every stored version (repeatable)")
	cmd.Flags().BoolVar(&s.all, "all", false, "every EKB in the store")
}

func (s *ekbSource) empty() bool { return len(s.files) == 0 && len(s.keys) == 0 && !s.all }

// read returns the EKBs named, store keys in key and version order.
func (s *ekbSource) read() ([][]byte, error) {
	var out [][]byte
	for _, f := range s.files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--ekb: %w", err)
		}
		out = append(out, b)
	}
	if len(s.keys) == 0 && !s.all {
		return out, nil
	}
	st := client.EKBStore{Dir: s.store}
	vs, err := st.List()
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, k := range s.keys {
		want[k] = false
	}
	for _, v := range vs {
		if _, ok := want[v.KeyID]; !ok && !s.all {
			continue
		}
		want[v.KeyID] = true
		b, err := st.Get(v.KeyID, v.Version)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	for _, k := range s.keys {
		if !want[k] {
			return nil, fmt.Errorf("key %s has no EKB in the store %s", k, s.store)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no EKBs: the store is empty")
	}
	return out, nil
}

// readSeeds reads seeds as JSON: [{"seed": base64, "type": key type}, …].
func readSeeds(cmd *cobra.Command, name string) ([]api.Seed, error) {
	raw, err := readInput(cmd, name)
	if err != nil {
		return nil, fmt.Errorf("--seeds: %w", err)
	}
	var seeds []api.Seed
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&seeds); err != nil {
		return nil, fmt.Errorf(`--seeds: want JSON [{"seed": BASE64, "type": KEY_TYPE, optionally "kdf": "v2"|"v1" and "policy": {…}}, …]: %w`, err)
	}
	if len(seeds) == 0 {
		return nil, errors.New("--seeds: no seeds")
	}
	return seeds, nil
}

func newGrantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "grant", Short: "Mint single-use grants for a sidecar to load keys"}
	c := connFlags(cmd)
	var src ekbSource
	var instance, seedsFile string
	var retained []string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Mint a grant for one sidecar instance to load exactly these EKBs, retained keys or seeds",
		Long: `Mint a single-use grant bound to one sidecar instance and exactly the keys
named. The grant is a secret; the sidecar's POST /v1/keys/load (or
/v1/keys/derive for seeds) uses it up. 'dcaas load grant' and 'dcaas load
seeds' mint and use grants in one step.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if instance == "" {
				return errors.New("--instance is required")
			}
			req := api.GrantRequest{InstanceID: instance, KeyIDs: retained, TTLSeconds: int(ttl / time.Second)}
			if !src.empty() {
				ekbs, err := src.read()
				if err != nil {
					return err
				}
				req.EKBs = ekbs
			}
			if seedsFile != "" {
				seeds, err := readSeeds(cmd, seedsFile)
				if err != nil {
					return err
				}
				for _, s := range seeds {
					req.Seeds = append(req.Seeds, s.Seed)
				}
			}
			return kmsCall(cmd, c, func(k *client.KMS) (*api.Grant, error) {
				return k.CreateGrant(cmd.Context(), req)
			}, func(w io.Writer, g *api.Grant) { fmt.Fprintln(w, g.Grant) })
		},
	}
	src.flags(create)
	create.Flags().StringVar(&instance, "instance", "", "sidecar instance id (required; see 'dcaas instances list')")
	create.Flags().StringArrayVar(&retained, "retained", nil, "a key id retained by the KMS (repeatable)")
	create.Flags().StringVar(&seedsFile, "seeds", "", `seeds JSON file ("-": stdin): [{"seed": BASE64, "type": KEY_TYPE}, …]`)
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime of the grant (default: the KMS's, 5m)")
	cmd.AddCommand(create)
	return cmd
}

// keyParams are the flags of a new key's metadata, shared by key create
// and key components start: policy, purpose, labels, expiry, retention.
type keyParams struct {
	policy, purpose, expires string
	labels                   []string
	retain                   bool
	rotation                 time.Duration
}

func (p *keyParams) flags(fl *pflag.FlagSet) {
	fl.StringVar(&p.policy, "policy", "", `key policy: a JSON file, or inline JSON ({"rules":[{"principals":[DN],"actions":[…]}]})`)
	fl.StringVar(&p.purpose, "purpose", "", "free-text purpose bound into the metadata")
	fl.StringArrayVar(&p.labels, "label", nil, "KEY=VALUE label bound into the metadata (repeatable)")
	fl.StringVar(&p.expires, "expires", "", "key expiry: an RFC 3339 time or a duration from now (e.g. 8760h)")
	fl.BoolVar(&p.retain, "retain", false, "have the KMS retain the key (usable by key id)")
	fl.DurationVar(&p.rotation, "rotation-period", 0, "rotate each version this long after it is made (e.g. 2160h; at least the KMS's --min-rotation-period, 1h by default; 0: never)")
}

// apply sets req's key parameters from the flags: the policy (a file or
// inline JSON), the expiry, the labels, the purpose, retain and the
// rotation period.
func (p *keyParams) apply(req *api.CreateDataKeyRequest) error {
	if p.policy != "" {
		policy, err := readPolicy(p.policy)
		if err != nil {
			return err
		}
		req.Policy = policy
	}
	if p.expires != "" {
		t, err := parseExpiry(p.expires, time.Now())
		if err != nil {
			return err
		}
		req.ExpiresAt = &t
	}
	for _, l := range p.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		if req.Labels == nil {
			req.Labels = map[string]string{}
		}
		req.Labels[k] = v
	}
	if p.rotation < 0 || p.rotation%time.Second != 0 {
		return fmt.Errorf("--rotation-period %s: want whole seconds, 0 or more", p.rotation)
	}
	req.Purpose, req.Retain, req.RotationPeriodSeconds = p.purpose, p.retain, int64(p.rotation/time.Second)
	return nil
}
