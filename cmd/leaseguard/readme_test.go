package main

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEConfigurationTable keeps the README's configuration table equal
// to what the binary reads (regenerate with: leaseguard config --markdown).
func TestREADMEConfigurationTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), configTable()) {
		t.Error("README.md's configuration table is stale: paste the output of `leaseguard config --markdown`")
	}
}
