package spec_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// The documentation checks: docs/api.md describes exactly the routes of
// openapi.yaml and every error code, and every relative link of the
// repository's Markdown resolves.

const (
	repoRoot = "../.."
	apiDoc   = "../../docs/api.md"
)

// apiDocRoute is the heading of a route's section in docs/api.md.
var apiDocRoute = regexp.MustCompile(`^### (GET|POST|PUT|DELETE|PATCH) (/\S*)$`)

// TestAPIDocCoversSpec checks that docs/api.md has one section per
// operation of openapi.yaml ("### METHOD /path") and none for an operation
// openapi.yaml does not have.
func TestAPIDocCoversSpec(t *testing.T) {
	s := mustSpec(t)
	inSpec := map[string]bool{}
	for _, op := range s.ops {
		inSpec[op.method+" "+op.path] = true
	}
	inDoc := map[string]bool{}
	for i, line := range strings.Split(mustRead(t, apiDoc), "\n") {
		m := apiDocRoute.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := m[1] + " " + m[2]
		if inDoc[r] {
			t.Errorf("docs/api.md line %d: a second section for %s", i+1, r)
		}
		inDoc[r] = true
	}
	if len(inSpec) < 50 || len(inDoc) == 0 {
		t.Fatalf("%d operations in the spec, %d route sections in docs/api.md: the readers broke", len(inSpec), len(inDoc))
	}
	if missing := minus(inSpec, inDoc); len(missing) > 0 {
		t.Errorf("docs/api.md has no section (\"### METHOD /path\") for these routes of %s:\n\t%s", specFile, strings.Join(missing, "\n\t"))
	}
	if extra := minus(inDoc, inSpec); len(extra) > 0 {
		t.Errorf("docs/api.md describes routes that %s does not have:\n\t%s", specFile, strings.Join(extra, "\n\t"))
	}
}

// TestAPIDocCoversSchemas checks that docs/api.md has a section
// ("### Name") for every schema of openapi.yaml, whose field table names
// every property of the schema and no other.
func TestAPIDocCoversSchemas(t *testing.T) {
	s := mustSpec(t)
	sections := map[string][]string{} // schema heading → its lines
	cur := ""
	for _, line := range strings.Split(mustRead(t, apiDoc), "\n") {
		switch {
		case strings.HasPrefix(line, "### "):
			cur = strings.TrimPrefix(line, "### ")
			sections[cur] = nil
		case strings.HasPrefix(line, "## "):
			cur = ""
		case cur != "":
			sections[cur] = append(sections[cur], line)
		}
	}
	field := regexp.MustCompile("^\\| `([a-z0-9_]+)` \\|")
	for _, name := range sortedKeys(s.schemas) {
		lines, ok := sections[name]
		if !ok {
			t.Errorf("docs/api.md has no section \"### %s\" (schema of %s)", name, specFile)
			continue
		}
		inDoc := map[string]bool{}
		for _, l := range lines {
			if m := field.FindStringSubmatch(l); m != nil {
				inDoc[m[1]] = true
			}
		}
		inSpec := map[string]bool{}
		for p := range s.schemas[name].props {
			inSpec[p] = true
		}
		if missing := minus(inSpec, inDoc); len(missing) > 0 {
			t.Errorf("docs/api.md, section %s: no row for the fields %v", name, missing)
		}
		if extra := minus(inDoc, inSpec); len(extra) > 0 {
			t.Errorf("docs/api.md, section %s: rows for fields the schema does not have: %v", name, extra)
		}
	}
}

// TestErrorCodesDocumented checks that every error code constant of
// api/errors.go is in openapi.yaml's Code enum (and the enum holds no other)
// and has a row "| `code` | status |" in docs/api.md with its HTTP status.
func TestErrorCodesDocumented(t *testing.T) {
	codes := errorCodes(t)
	if len(codes) < 20 {
		t.Fatalf("read %d error codes from api/errors.go: the reader broke", len(codes))
	}
	s := mustSpec(t)
	enum := s.schemas["Code"]
	if enum == nil {
		t.Fatal("openapi.yaml has no schema Code")
	}
	if missing := minus(setOf(codes), setOf(enum.enum)); len(missing) > 0 {
		t.Errorf("error codes of api/errors.go missing from the Code enum of %s: %v", specFile, missing)
	}
	if extra := minus(setOf(enum.enum), setOf(codes)); len(extra) > 0 {
		t.Errorf("the Code enum of %s holds codes api/errors.go does not define: %v", specFile, extra)
	}
	doc := mustRead(t, apiDoc)
	for _, c := range codes {
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(c) + "` \\| ([0-9]+) \\|")
		m := row.FindStringSubmatch(doc)
		if m == nil {
			t.Errorf("docs/api.md has no row \"| `%s` | status | meaning |\" in its error code table", c)
			continue
		}
		if want := api.Code(c).Status(); m[1] != strconv.Itoa(want) {
			t.Errorf("docs/api.md gives %s HTTP %s, api/errors.go %d", c, m[1], want)
		}
	}
}

// errorCodes reads the values of the constants of type Code in
// api/errors.go (from the source, so that a new constant is seen even if
// nothing else uses it).
func errorCodes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(apiDir, "errors.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("api/errors.go: a Code constant that is not a string literal: %#v", v)
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, s)
			}
		}
	}
	return out
}

// TestDocLinks checks every relative link and image of the repository's
// Markdown files: the file or directory exists, and a #fragment names a
// heading of the target (GitHub's anchors).
func TestDocLinks(t *testing.T) {
	files := markdownFiles(t)
	if !slices.Contains(files, "README.md") || !slices.Contains(files, "docs/api.md") {
		t.Fatalf("found %v: want README.md and docs/*.md among them", files)
	}
	anchors := map[string]map[string]bool{}
	anchorsOf := func(rel string) map[string]bool {
		if a, ok := anchors[rel]; ok {
			return a
		}
		a := headingAnchors(mustRead(t, filepath.Join(repoRoot, rel)))
		anchors[rel] = a
		return a
	}
	checked := 0
	for _, rel := range files {
		for _, l := range markdownLinks(mustRead(t, filepath.Join(repoRoot, rel))) {
			target, frag, _ := strings.Cut(l.target, "#")
			where := fmt.Sprintf("%s line %d: link %q", rel, l.line, l.target)
			resolved := rel
			if target != "" {
				resolved = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(rel), target)))
				if strings.HasPrefix(resolved, "../") || resolved == ".." {
					t.Errorf("%s leaves the repository", where)
					continue
				}
				if _, err := os.Stat(filepath.Join(repoRoot, resolved)); err != nil {
					t.Errorf("%s: %s does not exist", where, resolved)
					continue
				}
			}
			checked++
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(resolved, ".md") {
				t.Errorf("%s: a #fragment on a file that is not Markdown", where)
				continue
			}
			if !anchorsOf(resolved)[frag] {
				t.Errorf("%s: %s has no heading with the anchor #%s", where, resolved, frag)
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked %d links: the reader broke", checked)
	}
}

// TestNoOutsideDocReferences checks that nothing in the repository points
// at documents that are not in it: the project's old shared contract and
// design documents.
func TestNoOutsideDocReferences(t *testing.T) {
	banned := []string{"DESIGN" + ".md", "API" + ".md", "../" + "shared"}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		if d.IsDir() {
			if rel == ".git" || rel == "bin" || rel == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".yaml", ".yml", ".sh", ".json", ".txt", ".tpl":
		default:
			if filepath.Base(path) != "Makefile" {
				return nil
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, s := range banned {
				if strings.Contains(line, s) {
					t.Errorf("%s line %d names %s, which is not in the repository: point at docs/design.md or docs/api.md", rel, i+1, s)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// markdownFiles lists the repository's Markdown files, relative to its
// root, with forward slashes.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		if d.IsDir() && (rel == ".git" || rel == "bin" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type mdLink struct {
	line   int
	target string
}

var (
	// [text](target) and ![alt](target), target without spaces, with an
	// optional "title".
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// [label]: target
	refLink  = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s+(\S+)`)
	codeSpan = regexp.MustCompile("`[^`]*`")
	external = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// proseLines yields the lines of src outside fenced code blocks (``` or
// ~~~, indented by spaces or not) with their 1-based line numbers; the
// fence lines themselves are left out.
func proseLines(src string) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		fence := ""
		for i, line := range strings.Split(src, "\n") {
			trimmed := strings.TrimLeft(line, " ")
			if fence != "" {
				if strings.HasPrefix(trimmed, fence) {
					fence = ""
				}
				continue
			}
			if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
				fence = trimmed[:3]
				continue
			}
			if !yield(i+1, line) {
				return
			}
		}
	}
}

// markdownLinks returns the relative link targets of src outside fenced
// code blocks and code spans.
func markdownLinks(src string) []mdLink {
	var out []mdLink
	for n, line := range proseLines(src) {
		line = codeSpan.ReplaceAllString(line, "")
		var targets []string
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			targets = append(targets, m[1])
		}
		if m := refLink.FindStringSubmatch(line); m != nil {
			targets = append(targets, m[1])
		}
		for _, tg := range targets {
			tg = strings.Trim(tg, "<>")
			if external.MatchString(tg) {
				continue
			}
			out = append(out, mdLink{line: n, target: tg})
		}
	}
	return out
}

var notInAnchor = regexp.MustCompile(`[^\p{L}\p{N}\- _]`)

// headingAnchors returns the anchors GitHub gives the headings of src:
// lower case, punctuation dropped, spaces to hyphens, "-1", "-2", ... on
// repeats.
func headingAnchors(src string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, line := range proseLines(src) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimLeft(line, "#")
		if !strings.HasPrefix(text, " ") {
			continue
		}
		text = strings.TrimSpace(strings.TrimRight(strings.TrimSpace(text), "#"))
		// Links in a heading keep their text.
		text = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(text, "$1")
		a := strings.ToLower(text)
		a = notInAnchor.ReplaceAllString(a, "")
		a = strings.ReplaceAll(a, " ", "-")
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocReaders checks the Markdown readers the checks above rely on.
func TestDocReaders(t *testing.T) {
	links := markdownLinks("see [a](a.md#x) and ![img](b.png \"t\")\n`[c](c.md)`\n```\n[d](d.md)\n```\n[e]: e.md\n[f](https://x.org/f.md)\n")
	var got []string
	for _, l := range links {
		got = append(got, fmt.Sprintf("%d:%s", l.line, l.target))
	}
	if want := []string{"1:a.md#x", "1:b.png", "6:e.md"}; !slices.Equal(got, want) {
		t.Errorf("markdownLinks = %v, want %v", got, want)
	}
	anchors := headingAnchors("# Walkthrough: from nothing to a local encrypt\n## POST /v1/keys/load\n## Certificates: lifetimes, renewal, revocation, CA rotation\n## A\n## A\n```\n# not a heading\n```\n")
	for _, want := range []string{"walkthrough-from-nothing-to-a-local-encrypt", "post-v1keysload", "certificates-lifetimes-renewal-revocation-ca-rotation", "a", "a-1"} {
		if !anchors[want] {
			t.Errorf("headingAnchors lacks %q: %v", want, anchors)
		}
	}
	if anchors["not-a-heading"] {
		t.Error("headingAnchors read a heading inside a code block")
	}
}
