package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestREADMEConfigurationTable keeps docs/configuration.md's table equal
// to what the binary reads (regenerate with: leaseguard config --markdown).
func TestREADMEConfigurationTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), configTable()) {
		t.Error("docs/configuration.md's table is stale: paste the output of `leaseguard config --markdown`")
	}
}

// TestDeployEnvExampleListsEverySetting keeps the systemd environment
// example complete: it promises every variable with its default.
func TestDeployEnvExampleListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../deploy/systemd/leaseguard.env.example")
	if err != nil {
		t.Fatal(err)
	}
	example := string(b)
	for _, f := range reflect.VisibleFields(reflect.TypeOf(Config{})) {
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		line := "#" + name + "=" + f.Tag.Get("envDefault") + "\n"
		if !strings.Contains(example, line) && !strings.Contains(example, "#"+name+"=") {
			t.Errorf("deploy/systemd/leaseguard.env.example does not list %s", name)
		} else if !strings.Contains(example, line) {
			t.Errorf("deploy/systemd/leaseguard.env.example lists %s with another default than %q", name, f.Tag.Get("envDefault"))
		}
	}
}
