// Package container_test checks the container build without a container
// engine: there is none where the tests run. The test runs the Dockerfile's
// own go build line, as written (same flags, CGO_ENABLED=0), and checks that
// what it makes is a static binary that runs with nothing around it, which
// is all the distroless static image offers.
package container_test

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const root = "../.."

// buildLine is the RUN line of the build stage that runs go build.
func buildLine(t *testing.T, dockerfile string) string {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(dockerfile))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			lines = append(lines, strings.TrimPrefix(l, "RUN "))
		}
	}
	if len(lines) != 1 {
		t.Fatalf("want one RUN line with go build in the Dockerfile, found %d: %q", len(lines), lines)
	}
	return lines[0]
}

func readDockerfile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The final image is distroless static, runs as nonroot and has no shell:
// the entrypoint is the binary in exec form.
func TestDockerfileShape(t *testing.T) {
	d := readDockerfile(t)
	for _, want := range []string{
		"\nFROM gcr.io/distroless/static:nonroot\n",
		"\nUSER nonroot:nonroot\n",
		"\nENTRYPOINT [\"/usr/local/bin/leaseguard\"]\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("the Dockerfile lacks %q", strings.TrimSpace(want))
		}
	}
	froms := regexp.MustCompile(`(?m)^FROM `).FindAllString(d, -1)
	if len(froms) != 2 {
		t.Errorf("want two stages (builder, distroless), found %d FROM lines", len(froms))
	}
	line := buildLine(t, d)
	for _, flag := range []string{"CGO_ENABLED=0 ", "-trimpath", "-X main.version=${VERSION}", "./cmd/leaseguard"} {
		if !strings.Contains(line, flag) {
			t.Errorf("the go build line lacks %q: %s", flag, line)
		}
	}
	// The builder's Go is the one go.mod asks for.
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if goLine == nil {
		t.Fatal("no go line in go.mod")
	}
	if !strings.Contains(d, "ARG GO_VERSION="+string(goLine[1])+"\n") {
		t.Errorf("the Dockerfile's GO_VERSION is not go.mod's %s", goLine[1])
	}
}

// TestDockerfileBinaryIsStatic builds the binary with the Dockerfile's line
// and checks it needs no dynamic loader and no shared library, then runs it.
func TestDockerfileBinaryIsStatic(t *testing.T) {
	line := buildLine(t, readDockerfile(t))
	out := t.TempDir()
	// The build stage's paths: /out is the stage's output, the working
	// directory the source.
	line = strings.ReplaceAll(line, "/out/", out+"/")
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-imagetest")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	bin := filepath.Join(out, "leaseguard")
	checkStatic(t, bin)

	v, err := exec.Command(bin, "version").CombinedOutput()
	if first, _, _ := strings.Cut(string(v), "\n"); err != nil || first != "leaseguard v0.0.0-imagetest" {
		t.Errorf("leaseguard version: %v: %q", err, v)
	}
	h, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(h), "Usage:\n  leaseguard [command]") || !strings.Contains(string(h), "  run ") {
		t.Errorf("leaseguard --help: %v: %s", err, h)
	}
}

// checkStatic fails unless the ELF file has no interpreter, no dynamic
// section and no needed libraries.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %s program header: not a static binary", path, p.Type)
		}
	}
	if s := f.Section(".interp"); s != nil {
		t.Errorf("%s has an .interp section", path)
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("%s needs shared libraries: %v", path, libs)
	}
}
