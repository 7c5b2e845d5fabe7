package main

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/revoker"
)

// A struct tag cannot name a constant, so the defaults written in Config's
// tags are held to the packages' own here: the revoker's batches in flight
// and their bounds.
func TestConfigDefaultsAgreeWithThePackages(t *testing.T) {
	cfg, err := loadConfigFrom([]string{"LEASEGUARD_DATABASE_URL=postgres://127.0.0.1/test"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RevocationInFlight != revoker.DefaultInFlight {
		t.Errorf("LEASEGUARD_REVOCATION_BATCHES_IN_FLIGHT defaults to %d, revoker.DefaultInFlight is %d", cfg.RevocationInFlight, revoker.DefaultInFlight)
	}
	f, _ := reflect.TypeFor[Config]().FieldByName("RevocationInFlight")
	if want := fmt.Sprintf("(1 to %d)", revoker.MaxInFlight); !strings.Contains(f.Tag.Get("desc"), want) {
		t.Errorf("LEASEGUARD_REVOCATION_BATCHES_IN_FLIGHT is described as %q, without the bounds %s", f.Tag.Get("desc"), want)
	}
}
