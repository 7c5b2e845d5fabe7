package check

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// secretValues stand in for the Secret's keys (secret.example.yaml) the
// way a real installation fills them: a state store reached over verified
// TLS and a 32-byte signing seed.
var secretValues = map[string]string{
	"database-url":        "postgres://leaseguard@postgres.example.invalid:5432/leaseguard?sslmode=verify-full",
	"command-signing-key": base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")),
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
	buildOut  []byte
)

// TestMain removes the binary leaseguard built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		_ = os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

// leaseguard builds the binary from the repository once per test run.
func leaseguard(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "leaseguard-check-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "leaseguard")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/leaseguard")
		cmd.Dir = filepath.Join(kubeDir, "..", "..")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/leaseguard: %v\n%s", buildErr, buildOut)
	}
	return binary
}

// containerEnv is the environment the pod's container starts with: the
// ConfigMaps of envFrom, then env (literal values, Secret keys from
// secretValues; an optional key that is absent stays unset).
func containerEnv(t *testing.T, r rendered) map[string]string {
	t.Helper()
	c := r.deployment.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("envFrom %+v: only ConfigMaps expected", from)
		}
		cm := r.configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			t.Fatalf("envFrom names ConfigMap %s, which is not rendered", from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secretValues[ref.Key]
			if !ok && (ref.Optional == nil || !*ref.Optional) {
				t.Fatalf("%s: secret key %s/%s has no stand-in value", e.Name, ref.Name, ref.Key)
			}
			if ok {
				env[e.Name] = v
			}
		default:
			t.Fatalf("%s: unexpected valueFrom %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

// TestLeaseguardAcceptsEachOverlay: leaseguard's own configuration check
// (leaseguard config: parsing, validation, the refusals outside loopback)
// accepts the environment each overlay gives the pod.
func TestLeaseguardAcceptsEachOverlay(t *testing.T) {
	bin := leaseguard(t)
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			env := containerEnv(t, load(t, dir))
			cmd := exec.Command(bin, "config")
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("leaseguard config refuses the %s environment: %v\n%s", dir, err, out)
			}
		})
	}
}

// TestSettingsAreKnown: every LEASEGUARD_ variable the manifests set is
// one leaseguard reads (deploy/systemd/leaseguard.env.example lists them
// all, and cmd/leaseguard's tests keep it so). leaseguard ignores a
// variable it does not know, so a misspelt one would silently do nothing.
func TestSettingsAreKnown(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(kubeDir, "..", "systemd", "leaseguard.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#?\s*(LEASEGUARD_[A-Z0-9_]+)=`).FindAllStringSubmatch(string(b), -1) {
		known[m[1]] = true
	}
	if len(known) < 50 {
		t.Fatalf("only %d settings found in leaseguard.env.example", len(known))
	}
	for _, dir := range overlays {
		r := load(t, dir)
		var unknown []string
		for name := range containerEnv(t, r) {
			if strings.HasPrefix(name, "LEASEGUARD_") && !known[name] {
				unknown = append(unknown, name)
			}
		}
		sort.Strings(unknown)
		if len(unknown) > 0 {
			t.Errorf("%s sets variables leaseguard does not read: %v", dir, unknown)
		}
	}
}
