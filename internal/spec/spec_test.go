package spec_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

const (
	specFile = "../../api/openapi.yaml"
	apiDir   = "../../api"
)

// serverNames are the values x-dcaas-servers may hold.
var serverNames = []string{"kms", "sidecar"}

// outsideRouter are the routes cmd/dcaas mounts in front of both servers'
// routers, so Routes() does not list them.
var outsideRouter = []string{"GET /metrics"}

// TestRoutesMatchSpec starts a real KMS and a real sidecar enrolled with it
// and compares, per server, the routes they register with the operations
// the spec lists for that server in x-dcaas-servers.
func TestRoutesMatchSpec(t *testing.T) {
	s := mustSpec(t)
	inSpec := map[string][]string{}
	for _, op := range s.ops {
		for _, srv := range op.servers {
			inSpec[srv] = append(inSpec[srv], op.method+" "+op.path)
		}
	}
	inCode := codeRoutes(t)
	for _, srv := range serverNames {
		t.Run(srv, func(t *testing.T) {
			code := map[string]bool{}
			for _, p := range inCode[srv] {
				r, err := normalizePattern(p)
				if err != nil {
					t.Errorf("%s route %q: %v", srv, p, err)
					continue
				}
				code[r] = true
			}
			spec := map[string]bool{}
			for _, r := range inSpec[srv] {
				spec[r] = true
			}
			if len(code) == 0 || len(spec) == 0 {
				t.Fatalf("%s: %d routes in code, %d in the spec; want both non-empty", srv, len(code), len(spec))
			}
			if missing := minus(code, spec); len(missing) > 0 {
				t.Errorf("%s serves routes that %s does not list for it (add them, with x-dcaas-servers naming %s):\n\t%s",
					srv, specFile, srv, strings.Join(missing, "\n\t"))
			}
			if extra := minus(spec, code); len(extra) > 0 {
				t.Errorf("%s lists routes for %s that it does not serve (remove them, or drop %s from their x-dcaas-servers):\n\t%s",
					specFile, srv, srv, strings.Join(extra, "\n\t"))
			}
		})
	}
}

// codeRoutes returns the patterns each server registers, plus the routes
// mounted outside the routers.
func codeRoutes(t *testing.T) map[string][]string {
	t.Helper()
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	var tok api.EnrollmentToken
	cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
	sc, err := sidecar.New(t.Context(), sidecar.Config{
		KMSURL:      env.URL,
		CAPEM:       env.CAPEM,
		DataDir:     t.TempDir(),
		EnrollToken: sidecar.Secret([]byte(tok.Token)),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("sidecar.New: %v", err)
	}
	t.Cleanup(func() { sc.Close() })
	return map[string][]string{
		"kms":     append(env.Server().KMS.Routes(), outsideRouter...),
		"sidecar": append(sc.Routes(), outsideRouter...),
	}
}

// normalizePattern turns a ServeMux pattern into "METHOD /path".
func normalizePattern(p string) (string, error) {
	f := strings.Fields(p)
	if len(f) != 2 {
		return "", errors.New("want \"METHOD /path\": a pattern without a method matches every method, which the spec cannot list")
	}
	if !strings.HasPrefix(f[1], "/") {
		return "", errors.New("the path must start with / (no host in patterns)")
	}
	return strings.ToUpper(f[0]) + " " + f[1], nil
}

// minus returns the sorted keys of a that are not in b.
func minus(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestSpecRefsResolve checks that every $ref names an existing component.
func TestSpecRefsResolve(t *testing.T) {
	s := mustSpec(t)
	n, err := checkRefs(s)
	if err != nil {
		t.Errorf("%s:\n%v", specFile, err)
	}
	if n == 0 {
		t.Errorf("%s has no $ref lines; the reader found nothing to check", specFile)
	}
}

// TestSchemasMirrorAPI checks components/schemas against the Go types of
// package api: one schema per exported struct (same name, one property per
// JSON field, embedded structs flattened, matching types) and per named
// string type (its constants as the enum), and no other schemas.
func TestSchemasMirrorAPI(t *testing.T) {
	s := mustSpec(t)
	g := loadAPI(t)
	for _, name := range sortedKeys(g.structs) {
		n := s.schemas[name]
		if n == nil {
			t.Errorf("api.%s has no schema components/schemas/%s", name, name)
			continue
		}
		if n.typ != "object" {
			t.Errorf("schema %s (line %d): type %q, want object", name, n.line, n.typ)
		}
		fields, err := g.fields(g.structs[name])
		if err != nil {
			t.Errorf("api.%s: %v", name, err)
			continue
		}
		seen := map[string]bool{}
		for _, f := range fields {
			seen[f.name] = true
			p := n.props[f.name]
			if p == nil {
				t.Errorf("schema %s (line %d) lacks property %q of api.%s", name, n.line, f.name, name)
				continue
			}
			for _, problem := range g.match(name+"."+f.name, f.typ, p) {
				t.Error(problem)
			}
		}
		for _, prop := range sortedKeys(n.props) {
			if !seen[prop] {
				t.Errorf("schema %s property %q (line %d) is not a JSON field of api.%s", name, prop, n.props[prop].line, name)
			}
		}
	}
	for _, name := range sortedKeys(g.strings) {
		n := s.schemas[name]
		if n == nil {
			t.Errorf("api.%s has no schema components/schemas/%s", name, name)
			continue
		}
		if n.typ != "string" {
			t.Errorf("schema %s (line %d): type %q, want string", name, n.line, n.typ)
		}
		want, got := setOf(g.consts[name]), setOf(n.enum)
		if missing := minus(want, got); len(missing) > 0 {
			t.Errorf("schema %s (line %d): enum lacks the api.%s values %q", name, n.line, name, missing)
		}
		if extra := minus(got, want); len(extra) > 0 {
			t.Errorf("schema %s (line %d): enum has %q, which are not api.%s constants", name, n.line, extra, name)
		}
	}
	for _, name := range sortedKeys(s.schemas) {
		if g.structs[name] == nil && !g.strings[name] {
			t.Errorf("schema %s (line %d) mirrors no exported type of package api", name, s.schemas[name].line)
		}
	}
}

// TestErrorCodesHaveStatuses checks that the Code enum holds only codes
// with their own HTTP status (unknown codes map to 500).
func TestErrorCodesHaveStatuses(t *testing.T) {
	s := mustSpec(t)
	code := s.schemas["Code"]
	if code == nil {
		t.Fatal("no schema Code")
	}
	for _, c := range code.enum {
		if st := api.Code(c).Status(); st == 500 && api.Code(c) != api.CodeInternal {
			t.Errorf("Code enum value %q has no HTTP status in api/errors.go", c)
		}
	}
}

// TestSpecReaderRejects checks that the line reader fails, with a message
// naming the line, on files that break the format rules at the top of
// openapi.yaml, instead of silently reading fewer routes.
func TestSpecReaderRejects(t *testing.T) {
	const ok = "paths:\n  /a:\n    get:\n      x-dcaas-servers: [kms]\ncomponents:\n  schemas:\n    A:\n      type: object\n"
	if _, err := parseSpec(ok); err != nil {
		t.Fatalf("parseSpec(valid) = %v", err)
	}
	tests := []struct {
		name, src, want string
	}{
		{"tab", "paths:\n\t/a:\n", "line 2: tab"},
		{"odd indent", "paths:\n   /a:\n", "line 2: indented by 3"},
		{"path too deep", "paths:\n    /a:\n", "line 2: \"/a\" before the first path key"},
		{"path not a path", "paths:\n  a:\n", "line 2: \"a\" at 2 spaces"},
		{"unknown method", "paths:\n  /a:\n    head:\n", "line 3: \"head\" at 4 spaces"},
		{"operation field at 4", "paths:\n  /a:\n    summary: x\n", "line 3: \"summary\" at 4 spaces"},
		{"no method", "paths:\n  /a:\n      x-dcaas-servers: [kms]\n", "line 3: \"x-dcaas-servers\" under /a is not inside a method block"},
		{"no servers", "paths:\n  /a:\n    get:\n      summary: x\n", "line 3: GET /a has no x-dcaas-servers"},
		{"unknown server", "paths:\n  /a:\n    get:\n      x-dcaas-servers: [kms, hsm]\n", "line 4: unknown server \"hsm\""},
		{"servers twice", "paths:\n  /a:\n    get:\n      x-dcaas-servers: [kms]\n      x-dcaas-servers: [kms]\n", "line 5: a second x-dcaas-servers"},
		{"servers not a list", "paths:\n  /a:\n    get:\n      x-dcaas-servers: kms\n", "line 4: x-dcaas-servers: want a flow list"},
		{"duplicate path", "paths:\n  /a:\n    get:\n      x-dcaas-servers: [kms]\n  /a:\n", "line 5: path /a listed twice"},
		{"continued scalar", "paths:\n  /a:\n    get:\n      summary: a\n        b c\n", "line 5: \"b c\" is not"},
		{"open quote", "paths:\n  /a:\n    get:\n      summary: \"a\n", "line 4: a quoted value must end on its line"},
		{"alias", "paths:\n  /a:\n    get: *x\n", "line 3: anchors and aliases"},
		{"colon in a plain value", "paths:\n  /a:\n    get:\n      summary: a (b: c)\n", "line 4: a plain value may not contain \": \""},
		{"comment in a plain value", "paths:\n  /a:\n    get:\n      summary: a #b\n", "line 4: a plain value may not contain \" #\""},
		{"no paths", "openapi: 3.1.0\n", "no top-level \"paths:\""},
		{"schema property not a key", "paths:\n  /a:\n    get:\n      x-dcaas-servers: [kms]\ncomponents:\n  schemas:\n    A:\n      properties:\n          b:\n", "line 9: indented 10 spaces, want 8"},
		{"enum at key's indent", "paths:\n  /a:\n    get:\n      x-dcaas-servers: [kms]\ncomponents:\n  schemas:\n    A:\n      enum:\n      - x\n", "line 9: sequence items go one level deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSpec(tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseSpec = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	s, err := parseSpec(ok + "    B:\n      $ref: \"#/components/schemas/C\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkRefs(s); err == nil || !strings.Contains(err.Error(), "line 10: $ref \"#/components/schemas/C\" names no component") {
		t.Errorf("checkRefs(dangling) = %v, want the dangling $ref named", err)
	}
}

// ---- The line-based reader of openapi.yaml (format rules at its top). ----

// specLine is one structural line of the spec: not blank, not a comment,
// not inside a block scalar.
type specLine struct {
	no     int    // 1-based line number
	indent int    // of the key; for "- key: value", of the key after the dash
	dash   bool   // a sequence item
	key    string // mapping key; "" for a plain "- value" item
	value  string // the rest of the line, trimmed
}

type operation struct {
	method, path string
	servers      []string
	line         int
}

// spec is what the tests read from openapi.yaml.
type spec struct {
	lines   []specLine
	ops     []*operation
	comps   map[string]map[string][]specLine // section → name → the entry's lines, its key line first
	schemas map[string]*node
}

func mustSpec(t *testing.T) *spec {
	t.Helper()
	src, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseSpec(string(src))
	if err != nil {
		t.Fatalf("%s breaks the format rules at its top: %v", specFile, err)
	}
	return s
}

func parseSpec(src string) (*spec, error) {
	lines, err := readLines(src)
	if err != nil {
		return nil, err
	}
	s := &spec{lines: lines}
	if s.ops, err = readPaths(lines); err != nil {
		return nil, err
	}
	if s.comps, err = readComponents(lines); err != nil {
		return nil, err
	}
	s.schemas = map[string]*node{}
	for name, entry := range s.comps["schemas"] {
		if s.schemas[name], err = readNode(entry[1:], 6, entry[0].no); err != nil {
			return nil, fmt.Errorf("schema %s: %w", name, err)
		}
	}
	return s, nil
}

var blockScalar = regexp.MustCompile(`^[|>][-+]?[1-9]?$`)

// readLines splits src into structural lines, dropping blank lines,
// comments and block scalar contents.
func readLines(src string) ([]specLine, error) {
	var out []specLine
	block := -1 // indent of the key that opened a block scalar; -1 outside one
	for i, raw := range strings.Split(src, "\n") {
		no := i + 1
		raw = strings.TrimRight(raw, " \r")
		text := strings.TrimLeft(raw, " ")
		indent := len(raw) - len(text)
		if block >= 0 {
			if text == "" || indent > block {
				continue
			}
			block = -1
		}
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if strings.HasPrefix(text, "\t") {
			return nil, fmt.Errorf("line %d: tab in the indentation; indent with 2 spaces", no)
		}
		if indent%2 != 0 {
			return nil, fmt.Errorf("line %d: indented by %d spaces; indent by multiples of 2", no, indent)
		}
		l := specLine{no: no, indent: indent}
		if text == "-" || strings.HasPrefix(text, "- ") {
			l.dash = true
			text = strings.TrimSpace(text[1:])
			if text == "" {
				return nil, fmt.Errorf("line %d: empty sequence item; put the item on the dash's line", no)
			}
			if k, v, ok := splitKey(text); ok {
				l.indent += 2
				l.key, l.value = k, v
			} else {
				l.value = text
			}
		} else {
			k, v, ok := splitKey(text)
			if !ok {
				return nil, fmt.Errorf("line %d: %q is not a \"key: value\" or \"- item\" line (a value that does not fit on its line must be a | or > block scalar)", no, text)
			}
			l.key, l.value = k, v
		}
		if err := checkScalar(l.value); err != nil {
			return nil, fmt.Errorf("line %d: %v", no, err)
		}
		if blockScalar.MatchString(l.value) {
			block = l.indent
		}
		out = append(out, l)
	}
	return out, nil
}

// splitKey splits "key: value" or "key:"; ok is false for anything else.
func splitKey(text string) (key, value string, ok bool) {
	if q := text[0]; q == '"' || q == '\'' {
		end := strings.IndexByte(text[1:], q)
		if end < 0 {
			return "", "", false
		}
		key, rest := text[:end+2], text[end+2:]
		switch {
		case rest == ":":
			return key, "", true
		case strings.HasPrefix(rest, ": "):
			return key, strings.TrimSpace(rest[2:]), true
		}
		return "", "", false
	}
	if text[0] == '[' || text[0] == '{' {
		return "", "", false
	}
	if i := strings.Index(text, ": "); i >= 0 {
		return text[:i], strings.TrimSpace(text[i+2:]), true
	}
	if strings.HasSuffix(text, ":") {
		return strings.TrimSuffix(text, ":"), "", true
	}
	return "", "", false
}

// checkScalar rejects values the reader would misread: quoted or flow
// values continued on the next line, anchors and aliases.
func checkScalar(v string) error {
	if v == "" {
		return nil
	}
	closing := map[byte]byte{'"': '"', '\'': '\'', '[': ']', '{': '}'}
	if c, ok := closing[v[0]]; ok && (len(v) < 2 || v[len(v)-1] != c) {
		if c == ']' || c == '}' {
			return errors.New("a flow list or mapping must end on its line")
		}
		return errors.New("a quoted value must end on its line")
	}
	if v[0] == '&' || v[0] == '*' {
		return errors.New("anchors and aliases are not allowed")
	}
	// A plain scalar ends at ": " (YAML reads a nested mapping, or fails)
	// and at " #" (the rest is a comment): quote it, or use a block scalar.
	if _, ok := closing[v[0]]; !ok && !blockScalar.MatchString(v) {
		if strings.Contains(v, ": ") || strings.HasSuffix(v, ":") {
			return errors.New("a plain value may not contain \": \" (YAML reads a mapping): quote it or use a block scalar")
		}
		if strings.Contains(v, " #") {
			return errors.New("a plain value may not contain \" #\" (YAML drops the rest as a comment): quote it or use a block scalar")
		}
	}
	return nil
}

var methods = map[string]bool{"get": true, "post": true, "put": true, "delete": true, "patch": true}

// readPaths reads the operations of the paths: section.
func readPaths(lines []specLine) ([]*operation, error) {
	start := slices.IndexFunc(lines, func(l specLine) bool { return l.indent == 0 && !l.dash && l.key == "paths" })
	if start < 0 {
		return nil, errors.New("no top-level \"paths:\" line")
	}
	if lines[start].value != "" {
		return nil, fmt.Errorf("line %d: paths: must be a block mapping", lines[start].no)
	}
	var (
		ops   []*operation
		path  string
		cur   *operation
		paths = map[string]bool{}
		seen  = map[string]bool{}
	)
	for _, l := range lines[start+1:] {
		if l.indent == 0 {
			break
		}
		switch {
		case l.dash && l.indent <= 6:
			return nil, fmt.Errorf("line %d: a sequence item at %d spaces in paths:; only path keys (2 spaces), method keys (4) and operation fields (6) go there", l.no, l.indent)
		case l.indent == 2:
			if !strings.HasPrefix(l.key, "/") || l.value != "" {
				return nil, fmt.Errorf("line %d: %q at 2 spaces in paths:; want a path key like \"  /v1/things:\"", l.no, l.key)
			}
			if paths[l.key] {
				return nil, fmt.Errorf("line %d: path %s listed twice", l.no, l.key)
			}
			paths[l.key] = true
			path, cur = l.key, nil
		case path == "":
			return nil, fmt.Errorf("line %d: %q before the first path key; path keys go at exactly 2 spaces", l.no, l.key)
		case l.indent == 4:
			if !methods[l.key] || l.value != "" {
				return nil, fmt.Errorf("line %d: %q at 4 spaces under %s; want a method key (get, post, put, delete, patch) with its operation below it", l.no, l.key, path)
			}
			cur = &operation{method: strings.ToUpper(l.key), path: path, line: l.no}
			ops = append(ops, cur)
		case cur == nil:
			return nil, fmt.Errorf("line %d: %q under %s is not inside a method block", l.no, l.key, path)
		case l.indent == 6 && l.key == "x-dcaas-servers":
			if cur.servers != nil {
				return nil, fmt.Errorf("line %d: a second x-dcaas-servers for %s %s", l.no, cur.method, cur.path)
			}
			list, err := flowList(l.value)
			if err != nil {
				return nil, fmt.Errorf("line %d: x-dcaas-servers: %v", l.no, err)
			}
			if len(list) == 0 {
				return nil, fmt.Errorf("line %d: x-dcaas-servers is empty", l.no)
			}
			for _, s := range list {
				if !slices.Contains(serverNames, s) {
					return nil, fmt.Errorf("line %d: unknown server %q in x-dcaas-servers; use %v", l.no, s, serverNames)
				}
				if seen[cur.method+" "+cur.path+" "+s] {
					return nil, fmt.Errorf("line %d: server %q listed twice", l.no, s)
				}
				seen[cur.method+" "+cur.path+" "+s] = true
			}
			cur.servers = list
		}
	}
	for _, op := range ops {
		if op.servers == nil {
			return nil, fmt.Errorf("line %d: %s %s has no x-dcaas-servers line at 6 spaces", op.line, op.method, op.path)
		}
	}
	return ops, nil
}

// flowList parses a one-line flow list "[a, b]".
func flowList(v string) ([]string, error) {
	if !strings.HasPrefix(v, "[") || !strings.HasSuffix(v, "]") {
		return nil, fmt.Errorf("want a flow list like [kms, sidecar], got %q", v)
	}
	inner := strings.TrimSpace(v[1 : len(v)-1])
	if inner == "" {
		return []string{}, nil
	}
	var out []string
	for _, item := range strings.Split(inner, ",") {
		item = unquote(strings.TrimSpace(item))
		if item == "" {
			return nil, fmt.Errorf("empty item in %q", v)
		}
		out = append(out, item)
	}
	return out, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

var componentName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// readComponents reads the entries of each components: section.
func readComponents(lines []specLine) (map[string]map[string][]specLine, error) {
	comps := map[string]map[string][]specLine{}
	start := slices.IndexFunc(lines, func(l specLine) bool { return l.indent == 0 && !l.dash && l.key == "components" })
	if start < 0 {
		return comps, nil
	}
	var section, name string
	for _, l := range lines[start+1:] {
		if l.indent == 0 {
			break
		}
		switch {
		case l.dash && l.indent <= 4:
			return nil, fmt.Errorf("line %d: a sequence item at %d spaces in components:", l.no, l.indent)
		case l.indent == 2:
			if l.value != "" || comps[l.key] != nil {
				return nil, fmt.Errorf("line %d: components section %q must be a block mapping listed once", l.no, l.key)
			}
			section, name = l.key, ""
			comps[section] = map[string][]specLine{}
		case l.indent == 4:
			if !componentName.MatchString(l.key) || l.value != "" {
				return nil, fmt.Errorf("line %d: %q at 4 spaces in components/%s; want an entry name like \"    Thing:\"", l.no, l.key, section)
			}
			if comps[section][l.key] != nil {
				return nil, fmt.Errorf("line %d: components/%s/%s defined twice", l.no, section, l.key)
			}
			name = l.key
			comps[section][name] = []specLine{l}
		case name == "":
			return nil, fmt.Errorf("line %d: %q in components:%s outside an entry", l.no, l.key, section)
		default:
			comps[section][name] = append(comps[section][name], l)
		}
	}
	return comps, nil
}

var refPattern = regexp.MustCompile(`^#/components/([A-Za-z]+)/([A-Za-z0-9._-]+)$`)

// checkRefs checks every $ref line and returns how many it checked.
func checkRefs(s *spec) (int, error) {
	var errs []error
	n := 0
	for _, l := range s.lines {
		if l.key != "$ref" {
			continue
		}
		n++
		ref := unquote(l.value)
		m := refPattern.FindStringSubmatch(ref)
		switch {
		case m == nil:
			errs = append(errs, fmt.Errorf("line %d: $ref %q is not of the form \"#/components/<section>/<Name>\"", l.no, ref))
		case s.comps[m[1]][m[2]] == nil:
			errs = append(errs, fmt.Errorf("line %d: $ref %q names no component", l.no, ref))
		}
	}
	return n, errors.Join(errs...)
}

// node is the part of a schema the mirror test compares.
type node struct {
	line              int
	typ, format, ref  string
	enum              []string
	items, additional *node
	props             map[string]*node
}

// readNode reads a schema whose keys are the lines of body at indent ind;
// line is the line of the key that names it.
func readNode(body []specLine, ind, line int) (*node, error) {
	n := &node{line: line}
	for i := 0; i < len(body); {
		l := body[i]
		if l.indent != ind {
			return nil, fmt.Errorf("line %d: indented %d spaces, want %d", l.no, l.indent, ind)
		}
		if l.dash {
			return nil, fmt.Errorf("line %d: sequence items go one level deeper than their key", l.no)
		}
		j := i + 1
		for j < len(body) && body[j].indent > ind {
			j++
		}
		sub := body[i+1 : j]
		i = j
		var err error
		switch l.key {
		case "type":
			n.typ = unquote(l.value)
		case "format":
			n.format = unquote(l.value)
		case "$ref":
			n.ref = unquote(l.value)
		case "enum":
			if l.value != "" {
				n.enum, err = flowList(l.value)
				break
			}
			for _, e := range sub {
				if e.indent != ind+2 || !e.dash || e.key != "" {
					return nil, fmt.Errorf("line %d: want an enum item \"- value\" at %d spaces", e.no, ind+2)
				}
				n.enum = append(n.enum, unquote(e.value))
			}
		case "items":
			if l.value == "" {
				n.items, err = readNode(sub, ind+2, l.no)
			}
		case "additionalProperties":
			if l.value == "" {
				n.additional, err = readNode(sub, ind+2, l.no)
			}
		case "properties":
			n.props, err = readProps(sub, ind+2)
		}
		if err != nil {
			return nil, err
		}
	}
	return n, nil
}

// readProps reads property names at indent ind, each with its schema below.
func readProps(body []specLine, ind int) (map[string]*node, error) {
	props := map[string]*node{}
	for i := 0; i < len(body); {
		p := body[i]
		if p.indent != ind {
			return nil, fmt.Errorf("line %d: indented %d spaces, want %d (a property name)", p.no, p.indent, ind)
		}
		if p.dash || p.value != "" {
			return nil, fmt.Errorf("line %d: want a property name \"%s:\" with its schema below it", p.no, p.key)
		}
		j := i + 1
		for j < len(body) && body[j].indent > ind {
			j++
		}
		if props[p.key] != nil {
			return nil, fmt.Errorf("line %d: property %q defined twice", p.no, p.key)
		}
		n, err := readNode(body[i+1:j], ind+2, p.no)
		if err != nil {
			return nil, err
		}
		props[p.key] = n
		i = j
	}
	return props, nil
}

// ---- Package api, read from source. ----

type goAPI struct {
	structs map[string]*ast.StructType
	strings map[string]bool     // exported named types over string
	consts  map[string][]string // typed string constants by type
}

type goField struct {
	name string // JSON name
	typ  ast.Expr
}

func loadAPI(t *testing.T) *goAPI {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(apiDir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", apiDir, err)
	}
	g := &goAPI{structs: map[string]*ast.StructType{}, strings: map[string]bool{}, consts: map[string][]string{}}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range af.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, sp := range gd.Specs {
				switch sp := sp.(type) {
				case *ast.TypeSpec:
					if !sp.Name.IsExported() || sp.Assign.IsValid() {
						continue
					}
					switch tt := sp.Type.(type) {
					case *ast.StructType:
						g.structs[sp.Name.Name] = tt
					case *ast.Ident:
						if tt.Name == "string" {
							g.strings[sp.Name.Name] = true
						}
					}
				case *ast.ValueSpec:
					id, ok := sp.Type.(*ast.Ident)
					if gd.Tok != token.CONST || !ok {
						continue
					}
					for _, v := range sp.Values {
						if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
							s, err := strconv.Unquote(lit.Value)
							if err != nil {
								t.Fatal(err)
							}
							g.consts[id.Name] = append(g.consts[id.Name], s)
						}
					}
				}
			}
		}
	}
	return g
}

// fields lists a struct's JSON fields, embedded structs flattened, the
// way encoding/json sees them.
func (g *goAPI) fields(st *ast.StructType) ([]goField, error) {
	var out []goField
	for _, f := range st.Fields.List {
		tag := ""
		if f.Tag != nil {
			raw, err := strconv.Unquote(f.Tag.Value)
			if err != nil {
				return nil, err
			}
			tag = reflect.StructTag(raw).Get("json")
		}
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if len(f.Names) == 0 { // embedded
			typ := f.Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			id, ok := typ.(*ast.Ident)
			if name == "" && ok && g.structs[id.Name] != nil {
				inner, err := g.fields(g.structs[id.Name])
				if err != nil {
					return nil, err
				}
				out = append(out, inner...)
				continue
			}
			if name == "" {
				return nil, fmt.Errorf("embedded %s is not a struct of package api", types.ExprString(f.Type))
			}
			out = append(out, goField{name, f.Type})
			continue
		}
		for _, n := range f.Names {
			if !n.IsExported() {
				continue
			}
			jn := name
			if jn == "" {
				jn = n.Name
			}
			out = append(out, goField{jn, f.Type})
		}
	}
	return out, nil
}

// match compares a Go field type with its property schema.
func (g *goAPI) match(where string, expr ast.Expr, n *node) []string {
	bad := func(format string, args ...any) []string {
		return []string{fmt.Sprintf("schema %s (line %d): ", where, n.line) + fmt.Sprintf(format, args...)}
	}
	want := func(typ, format string) []string {
		if n.ref != "" || n.typ != typ || n.format != format {
			return bad("Go %s wants type %q format %q; the spec has type %q format %q $ref %q",
				types.ExprString(expr), typ, format, n.typ, n.format, n.ref)
		}
		return nil
	}
	switch e := expr.(type) {
	case *ast.StarExpr:
		return g.match(where, e.X, n)
	case *ast.Ident:
		switch e.Name {
		case "string":
			return want("string", "")
		case "bool":
			return want("boolean", "")
		case "int":
			return want("integer", "")
		case "int64":
			return want("integer", "int64")
		}
		if g.structs[e.Name] != nil || g.strings[e.Name] {
			if ref := "#/components/schemas/" + e.Name; n.ref != ref {
				return bad("Go api.%s wants $ref %q; the spec has type %q $ref %q", e.Name, ref, n.typ, n.ref)
			}
			return nil
		}
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "time" && e.Sel.Name == "Time" {
			return want("string", "date-time")
		}
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "json" && e.Sel.Name == "RawMessage" {
			return want("object", "") // raw JSON the API carries as an object
		}
	case *ast.ArrayType:
		if e.Len != nil {
			break
		}
		if id, ok := e.Elt.(*ast.Ident); ok && id.Name == "byte" {
			return want("string", "byte")
		}
		if p := want("array", ""); p != nil {
			return p
		}
		if n.items == nil {
			return bad("an array needs an items schema")
		}
		return g.match(where+"[]", e.Elt, n.items)
	case *ast.MapType:
		if p := want("object", ""); p != nil {
			return p
		}
		if n.additional == nil {
			return bad("a Go map needs an additionalProperties schema")
		}
		return g.match(where+"{}", e.Value, n.additional)
	}
	return bad("Go type %s has no OpenAPI mapping in this test; extend goAPI.match", types.ExprString(expr))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}
