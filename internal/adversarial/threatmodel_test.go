package adversarial_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestThreatModelReferences keeps docs/threat-model.md true to the code:
// every control it cites as `path/file.go:Function` must still be declared
// there, and every proof it cites as `package:TestName` or
// `package:TestName/subtest` must still be a test of that package (the
// subtest name as its t.Run string).
func TestThreatModelReferences(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "threat-model.md"))
	if err != nil {
		t.Fatal(err)
	}
	testRef := regexp.MustCompile("`([a-z0-9_/]+):(Test\\w+)(?:/([^`]+))?`")
	codeRef := regexp.MustCompile("`([a-z0-9_/]+\\.go):(\\w+)`")
	tests, code := 0, 0
	sources := map[string]string{}
	testSources := func(pkg string) string {
		if s, ok := sources[pkg]; ok {
			return s
		}
		files, _ := filepath.Glob(filepath.Join(root, pkg, "*_test.go"))
		var b strings.Builder
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
		sources[pkg] = b.String()
		return sources[pkg]
	}
	for _, m := range testRef.FindAllStringSubmatch(string(doc), -1) {
		tests++
		pkg, name, sub := m[1], m[2], m[3]
		src := testSources(pkg)
		if !regexp.MustCompile(`(?m)^func ` + name + `\(`).MatchString(src) {
			t.Errorf("docs/threat-model.md cites %s:%s, which is not a test of %s", pkg, name, pkg)
			continue
		}
		if sub != "" && !strings.Contains(src, `"`+sub+`"`) {
			t.Errorf("docs/threat-model.md cites %s:%s/%s, and no test of %s names a subtest %q", pkg, name, sub, pkg, sub)
		}
	}
	for _, m := range codeRef.FindAllStringSubmatch(string(doc), -1) {
		code++
		path, fn := m[1], m[2]
		data, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Errorf("docs/threat-model.md cites %s:%s: %v", path, fn, err)
			continue
		}
		if !regexp.MustCompile(`(?m)^func (\([^)]*\) )?` + fn + `[\[(]`).Match(data) {
			t.Errorf("docs/threat-model.md cites %s:%s, which %s no longer declares", path, fn, path)
		}
	}
	if tests < 50 || code < 30 {
		t.Fatalf("found only %d test and %d code references: has the citation format changed?", tests, code)
	}
}
