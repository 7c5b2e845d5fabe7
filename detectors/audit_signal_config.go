package detectors

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/store"
)

// The audit-signal rules: they judge what audit entries that change no
// lease say (counted per minute by ingest, see store/audit_signals.go),
// the liveness of the audit stream, and the observer's sessions against the
// addresses a lease's Vault requests came from.
const (
	// RuleForeignAddress: a session of a managed role from a client address
	// that none of its lease's Vault requests (issue, renewals) came from and
	// that no allowed CIDR of its Vault role contains. Medium; may enforce
	// (or ask an owner's approval).
	RuleForeignAddress = "credential-foreign-address"
	// RuleRenewalPastMaxTTL: a renewed lease whose expiry is past its issue
	// time plus the role's max TTL. High; may enforce (or ask an owner's
	// approval).
	RuleRenewalPastMaxTTL = "renewal-past-max-ttl"
	// RuleIssuanceBurst: credentials issued to one Vault entity (or token
	// accessor) for one role within a window above an absolute threshold or
	// above a multiple of its own baseline. High; observe only.
	RuleIssuanceBurst = "issuance-burst"
	// RuleDeniedBurst: permission-denied errors on <mount>/creds/ paths from
	// one entity (or accessor) and client address within a window above a
	// threshold. Medium; observe only.
	RuleDeniedBurst = "permission-denied-burst"
	// RuleRootTokenUse: a request on a database mount made with a root
	// token. High; observe only.
	RuleRootTokenUse = "root-token-use"
	// RuleAuditDeviceDisabled: an audit device disabled (critical), a
	// refused attempt (medium); an audit device enabled is noted (low).
	// Observe only.
	RuleAuditDeviceDisabled = "audit-device-disabled"
	// RuleAuditSilence: no audit entry for a window while managed roles have
	// live sessions. High; observe only.
	RuleAuditSilence = "audit-silence"
)

// Defaults of SignalRulesConfig.
const (
	DefaultIssuanceWindow       = 5 * time.Minute
	DefaultIssuanceThreshold    = 50
	DefaultIssuanceFactor       = 10.0
	DefaultIssuanceBaseline     = 24 * time.Hour
	DefaultIssuanceBaselineMin  = 20
	DefaultDeniedWindow         = 5 * time.Minute
	DefaultDeniedThreshold      = 10
	DefaultRootTokenWindow      = time.Hour
	DefaultSilenceWindow        = 15 * time.Minute
	DefaultMaxTTL               = 768 * time.Hour // Vault's system max_lease_ttl
	DefaultForeignAddressGrace  = time.Minute
	DefaultSignalLookback       = time.Hour
	DefaultSignalSessionsLimit  = 10000
	DefaultSignalWindowsLimit   = 1000
	validUntilMargin            = 5 * time.Second // the PostgreSQL plugin's VALID UNTIL is expiry + 5 s
	eventExpiryMargin           = time.Second
	defaultSignalRulesClockSkew = 30 * time.Second
)

// SignalRulesConfig configures the audit-signal rules. Zero fields get the
// defaults (WithDefaults); a zero threshold of a burst is not possible.
type SignalRulesConfig struct {
	// IssuanceWindow, IssuanceThreshold: more than IssuanceThreshold
	// credentials for one principal and role within IssuanceWindow is a
	// burst (default 50 in 5m).
	IssuanceWindow    time.Duration
	IssuanceThreshold int64
	// IssuanceFactor, IssuanceBaseline, IssuanceBaselineMin: also a burst
	// when a window has at least IssuanceBaselineMin credentials and more
	// than IssuanceFactor times the key's average per window over the
	// preceding IssuanceBaseline (default 10x, 24h, 20). A negative factor
	// turns the baseline trigger off.
	IssuanceFactor      float64
	IssuanceBaseline    time.Duration
	IssuanceBaselineMin int64
	// DeniedWindow, DeniedThreshold: more than DeniedThreshold
	// permission-denied errors on creds paths from one principal and
	// address within DeniedWindow (default 10 in 5m).
	DeniedWindow    time.Duration
	DeniedThreshold int64
	// RootTokenWindow: one root-token-use finding per principal, mount,
	// role and address per window (default 1h).
	RootTokenWindow time.Duration
	// Lookback: windows ending this long ago or later are judged (default
	// 1h): entries that arrive later than that, out of order, are counted
	// but no longer judged.
	Lookback time.Duration
	// SilenceWindow: no audit entry committed for longer than this while
	// sessions are active is audit-silence (default 15m). It must be longer
	// than the quietest normal stretch of Vault traffic, or it pages for
	// nothing.
	SilenceWindow time.Duration
	// MaxTTLs per Vault role ("mount/role" or "role"); DefaultMaxTTL for
	// the others (Vault's system default, 768h).
	MaxTTLs       map[string]time.Duration
	DefaultMaxTTL time.Duration
	// AllowedCIDRs per Vault role ("mount/role", "role" or "*"): client
	// addresses always allowed for the role's sessions.
	AllowedCIDRs map[string][]netip.Prefix
	// ForeignGrace: a session is judged this long after the observer first
	// saw it, so the audit entries of a renewal from its host can arrive
	// (default 1m).
	ForeignGrace time.Duration
	// ClockSkew tolerated between Vault's clock and the database's when
	// comparing a lease's issue time with rolvaliduntil (default 30s).
	ClockSkew time.Duration
}

// DefaultSignalRulesConfig returns the documented defaults.
func DefaultSignalRulesConfig() SignalRulesConfig {
	return SignalRulesConfig{
		IssuanceWindow: DefaultIssuanceWindow, IssuanceThreshold: DefaultIssuanceThreshold,
		IssuanceFactor: DefaultIssuanceFactor, IssuanceBaseline: DefaultIssuanceBaseline,
		IssuanceBaselineMin: DefaultIssuanceBaselineMin,
		DeniedWindow:        DefaultDeniedWindow, DeniedThreshold: DefaultDeniedThreshold,
		RootTokenWindow: DefaultRootTokenWindow, Lookback: DefaultSignalLookback, SilenceWindow: DefaultSilenceWindow,
		DefaultMaxTTL: DefaultMaxTTL, ForeignGrace: DefaultForeignAddressGrace, ClockSkew: defaultSignalRulesClockSkew,
	}
}

// WithDefaults fills zero fields with the defaults.
func (c SignalRulesConfig) WithDefaults() SignalRulesConfig {
	d := DefaultSignalRulesConfig()
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.IssuanceWindow, &d.IssuanceWindow}, {&c.IssuanceBaseline, &d.IssuanceBaseline},
		{&c.DeniedWindow, &d.DeniedWindow}, {&c.RootTokenWindow, &d.RootTokenWindow}, {&c.Lookback, &d.Lookback},
		{&c.SilenceWindow, &d.SilenceWindow}, {&c.DefaultMaxTTL, &d.DefaultMaxTTL},
		{&c.ForeignGrace, &d.ForeignGrace}, {&c.ClockSkew, &d.ClockSkew},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *int64 }{
		{&c.IssuanceThreshold, &d.IssuanceThreshold}, {&c.IssuanceBaselineMin, &d.IssuanceBaselineMin},
		{&c.DeniedThreshold, &d.DeniedThreshold},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if c.IssuanceFactor == 0 {
		c.IssuanceFactor = d.IssuanceFactor
	}
	return c
}

// Validate checks a configuration after WithDefaults.
func (c SignalRulesConfig) Validate() error {
	for _, w := range []struct {
		name string
		d    time.Duration
	}{{"issuance-burst window", c.IssuanceWindow}, {"permission-denied-burst window", c.DeniedWindow},
		{"root-token-use window", c.RootTokenWindow}} {
		if w.d <= 0 || w.d%store.BucketWidth != 0 {
			return fmt.Errorf("%s %s must be a positive whole number of %s", w.name, w.d, store.BucketWidth)
		}
	}
	switch {
	case c.IssuanceThreshold < 0 || c.DeniedThreshold < 0 || c.IssuanceBaselineMin < 0:
		return errors.New("burst thresholds must not be negative")
	case c.IssuanceFactor > 0 && c.IssuanceFactor <= 1:
		return fmt.Errorf("issuance-burst baseline factor %g must be above 1 (or negative: off)", c.IssuanceFactor)
	case c.IssuanceBaseline < 0 || c.IssuanceBaseline%store.BucketWidth != 0:
		return fmt.Errorf("issuance-burst baseline period %s must be a whole number of %s", c.IssuanceBaseline, store.BucketWidth)
	case c.Lookback <= 0 || c.SilenceWindow <= 0 || c.ForeignGrace < 0 || c.ClockSkew < 0:
		return errors.New("lookback and silence window must be positive, grace and clock skew not negative")
	case c.DefaultMaxTTL <= 0:
		return errors.New("default max TTL must be positive")
	}
	for r, d := range c.MaxTTLs {
		if d <= 0 {
			return fmt.Errorf("max TTL of %s must be positive", r)
		}
	}
	return nil
}

// roleKeys are the keys a per-role setting may use for mount/role, most
// specific first.
func roleKeys(mount, role string) []string {
	mount = strings.Trim(mount, "/")
	return []string{mount + "/" + role, role}
}

// MaxTTL returns the max TTL of a Vault role.
func (c SignalRulesConfig) MaxTTL(mount, role string) time.Duration {
	for _, k := range roleKeys(mount, role) {
		if d, ok := c.MaxTTLs[k]; ok {
			return d
		}
	}
	return c.DefaultMaxTTL
}

// Allowed returns the allowed CIDRs of a Vault role: its own ("mount/role"
// or "role") and those of "*".
func (c SignalRulesConfig) Allowed(mount, role string) []netip.Prefix {
	var out []netip.Prefix
	for _, k := range roleKeys(mount, role) {
		if ps, ok := c.AllowedCIDRs[k]; ok {
			out = append(out, ps...)
			break
		}
	}
	return append(out, c.AllowedCIDRs["*"]...)
}

// ParseAllowedCIDRs reads "role=cidr,cidr;mount/role=cidr;*=cidr". A bare
// address is a single-host prefix.
func ParseAllowedCIDRs(s string) (map[string][]netip.Prefix, error) {
	out := map[string][]netip.Prefix{}
	for _, e := range strings.Split(s, ";") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		role, list, ok := strings.Cut(e, "=")
		role = strings.Trim(strings.TrimSpace(role), "/")
		if !ok || role == "" {
			return nil, fmt.Errorf("%q: want role=cidr,cidr", e)
		}
		for _, c := range strings.Split(list, ",") {
			if c = strings.TrimSpace(c); c == "" {
				continue
			}
			p, err := parsePrefix(c)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", role, err)
			}
			out[role] = append(out[role], p)
		}
		if len(out[role]) == 0 {
			return nil, fmt.Errorf("%q: no CIDR", e)
		}
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// ParseMaxTTLs reads "role=duration,mount/role=duration".
func ParseMaxTTLs(s string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		role, v, ok := strings.Cut(e, "=")
		role = strings.Trim(strings.TrimSpace(role), "/")
		if !ok || role == "" {
			return nil, fmt.Errorf("%q: want role=duration", e)
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q: want a positive duration", e)
		}
		out[role] = d
	}
	return out, nil
}

// observeOnlySignalRules are the audit-signal rules that name no database
// user.
var observeOnlySignalRules = []string{RuleIssuanceBurst, RuleDeniedBurst, RuleRootTokenUse, RuleAuditDeviceDisabled, RuleAuditSilence}

// CheckSignalModes refuses enforce and approve for the audit-signal rules
// that name no database user.
func CheckSignalModes(m Modes) error {
	for _, r := range observeOnlySignalRules {
		if Acts(m.Mode(r)) {
			return fmt.Errorf("rule %s names no database user and can only observe", r)
		}
	}
	return nil
}
