package main

import (
	"crypto/ed25519"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"time"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// typedSettings are the settings whose text must be parsed, parsed once
// while the configuration is validated (Config.parse), next to the check
// that reports their error. The commands read these values; none parses a
// setting again.
type typedSettings struct {
	logLevel slog.Level
	roles    map[string]bool
	roleTTLs store.RoleTTLs

	modes   detectors.Modes
	scope   detectors.Scope
	managed *regexp.Regexp
	// signingKey is nil when none is configured (one is kept in DATA_DIR).
	signingKey ed25519.PrivateKey
	verifyKeys []ed25519.PublicKey
	// evidenceKey is nil when none is configured (one is kept in
	// DATA_DIR); evidenceVerifyKeys are LEASEGUARD_EVIDENCE_VERIFY_KEYS.
	evidenceKey        ed25519.PrivateKey
	evidenceVerifyKeys []ed25519.PublicKey

	// targets is empty without a state store and LEASEGUARD_TARGETS.
	targets target.Config
	sinks   map[string]bool

	socketNets []netip.Prefix
	socketMode os.FileMode

	allowedCIDRs map[string][]netip.Prefix
	maxTTLs      map[string]time.Duration
}

// parsed are c's typed settings. Only a validated Config has them
// (loadConfig, loadStoreConfig, Validate): using another is a bug.
func (c Config) parsed() *typedSettings {
	if c.typed == nil {
		panic("configuration used before it was validated")
	}
	return c.typed
}
