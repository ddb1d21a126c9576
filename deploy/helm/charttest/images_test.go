package charttest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var digestRef = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$`)

// notPulled are FROM names that are no image to pull, so they have no
// digest: scratch is the empty filesystem.
var notPulled = map[string]string{
	"scratch": "the empty filesystem, not an image",
}

// TestDockerfilesPinBaseImages: every FROM of deploy/docker pins its image
// by digest (a tag can be moved to other bytes; a digest cannot), except a
// build stage of the same file or scratch.
func TestDockerfilesPinBaseImages(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy/docker/Dockerfile*"))
	if err != nil {
		t.Fatal(err)
	}
	var checked int
	for _, f := range files {
		if strings.HasSuffix(f, ".dockerignore") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		froms := fromImages(string(data))
		if len(froms) == 0 {
			t.Errorf("%s: no FROM line", f)
		}
		stages := map[string]bool{}
		for _, from := range froms {
			checked++
			switch {
			case stages[from.image]:
			case notPulled[from.image] != "":
			case !digestRef.MatchString(from.image):
				t.Errorf("%s: FROM %s is not pinned by digest (IMAGE:TAG@sha256:…; docker buildx imagetools inspect IMAGE:TAG gives it)", filepath.Base(f), from.image)
			}
			if from.stage != "" {
				stages[from.stage] = true
			}
		}
	}
	if checked < 4 {
		t.Errorf("checked %d FROM lines in %d files; expected the two Dockerfiles' four", checked, len(files))
	}
}

type fromLine struct{ image, stage string }

// fromImages returns the image and stage name of every FROM instruction.
func fromImages(dockerfile string) []fromLine {
	var out []fromLine
	for _, line := range strings.Split(dockerfile, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || !strings.EqualFold(fields[0], "FROM") {
			continue
		}
		fields = fields[1:]
		for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
			fields = fields[1:] // --platform=…
		}
		if len(fields) == 0 {
			continue
		}
		fl := fromLine{image: fields[0]}
		if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
			fl.stage = fields[2]
		}
		out = append(out, fl)
	}
	return out
}

// TestChartDefaultImagesPinned: the images the chart pulls from public
// registries by default are pinned by digest. The dcaas images themselves
// are the user's build (registry.example.com is a placeholder to replace).
func TestChartDefaultImagesPinned(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Seal struct {
			File struct {
				CopyImage map[string]string `json:"copyImage"`
			} `json:"file"`
		} `json:"seal"`
		ExampleApp struct {
			AppImage map[string]string `json:"appImage"`
		} `json:"exampleApp"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	for what, img := range map[string]map[string]string{"seal.file.copyImage": v.Seal.File.CopyImage, "exampleApp.appImage": v.ExampleApp.AppImage} {
		ref := img["repository"] + ":" + img["tag"] + "@" + img["digest"]
		if !digestRef.MatchString(ref) {
			t.Errorf("%s: %s is not pinned by digest", what, ref)
		}
	}
}
