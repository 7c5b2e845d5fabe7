package main

import (
	"time"

	"github.com/leaseguard/leaseguard/detectors"
)

// SignalRulesConfig configures the audit-signal rules (credential-foreign-
// address, issuance-burst, renewal-past-max-ttl, root-token-use,
// audit-device-disabled, audit-silence, permission-denied-burst). Embedded
// in Config; their modes are in LEASEGUARD_RULE_MODES.
type SignalRulesConfig struct {
	AuditRulesInterval     time.Duration `env:"LEASEGUARD_AUDIT_RULES_INTERVAL" envDefault:"10s" desc:"how often the audit-log and audit-signal rules run"`
	AllowedCIDRs           string        `env:"LEASEGUARD_ALLOWED_CIDRS" desc:"client networks always allowed for a Vault role's sessions (credential-foreign-address): role=cidr,cidr;mount/role=cidr;*=cidr"`
	ForeignAddressGrace    time.Duration `env:"LEASEGUARD_FOREIGN_ADDRESS_GRACE" envDefault:"1m" desc:"credential-foreign-address judges a session this long after it was first seen, so the audit entries of a renewal from its host can arrive"`
	IssuanceBurstWindow    time.Duration `env:"LEASEGUARD_ISSUANCE_BURST_WINDOW" envDefault:"5m" desc:"issuance-burst window (whole minutes)"`
	IssuanceBurstThreshold int64         `env:"LEASEGUARD_ISSUANCE_BURST_THRESHOLD" envDefault:"50" desc:"issuance-burst: more credentials than this for one Vault entity (or token accessor) and role in a window"`
	IssuanceBurstFactor    float64       `env:"LEASEGUARD_ISSUANCE_BURST_BASELINE_FACTOR" envDefault:"10" desc:"issuance-burst: also a burst above this multiple of the key's average per window (negative: off)"`
	IssuanceBurstBaseline  time.Duration `env:"LEASEGUARD_ISSUANCE_BURST_BASELINE_PERIOD" envDefault:"24h" desc:"issuance-burst: the moving baseline is the average over this period before the window"`
	IssuanceBurstMin       int64         `env:"LEASEGUARD_ISSUANCE_BURST_BASELINE_MIN" envDefault:"20" desc:"issuance-burst: the baseline trigger needs at least this many credentials in the window"`
	DeniedBurstWindow      time.Duration `env:"LEASEGUARD_DENIED_BURST_WINDOW" envDefault:"5m" desc:"permission-denied-burst window (whole minutes)"`
	DeniedBurstThreshold   int64         `env:"LEASEGUARD_DENIED_BURST_THRESHOLD" envDefault:"10" desc:"permission-denied-burst: more permission-denied errors on creds paths than this from one entity (or accessor) and address in a window"`
	RootTokenWindow        time.Duration `env:"LEASEGUARD_ROOT_TOKEN_WINDOW" envDefault:"1h" desc:"root-token-use: one finding per token, mount, role and address per window (whole minutes)"`
	SignalLookback         time.Duration `env:"LEASEGUARD_SIGNAL_LOOKBACK" envDefault:"1h" desc:"windows ending this long ago are still judged: entries arriving later, out of order, are not"`
	AuditSilenceWindow     time.Duration `env:"LEASEGUARD_AUDIT_SILENCE_WINDOW" envDefault:"15m" desc:"audit-silence: no audit entry received for this long while managed roles have live sessions (make it longer than the quietest normal stretch of Vault traffic)"`
	DefaultMaxTTL          time.Duration `env:"LEASEGUARD_DEFAULT_MAX_TTL" envDefault:"768h" desc:"renewal-past-max-ttl: max TTL of roles LEASEGUARD_MAX_TTLS does not name (Vault's system default)"`
	MaxTTLs                string        `env:"LEASEGUARD_MAX_TTLS" desc:"renewal-past-max-ttl: max TTL per Vault role, role=duration or mount/role=duration,…"`
	RuleClockSkew          time.Duration `env:"LEASEGUARD_RULE_CLOCK_SKEW" envDefault:"30s" desc:"clock skew tolerated between Vault and the databases when comparing issue times with rolvaliduntil"`
}

// validate checks the signal rules' settings; the rule modes are checked
// with the others (validateEnforcement).
func (s SignalRulesConfig) validate(t *typedSettings, bad func(name, format string, args ...any)) {
	var err error
	if s.AuditRulesInterval <= 0 {
		bad("AUDIT_RULES_INTERVAL", "must be positive")
	}
	if t.allowedCIDRs, err = detectors.ParseAllowedCIDRs(s.AllowedCIDRs); err != nil {
		bad("ALLOWED_CIDRS", "%v", err)
	}
	if t.maxTTLs, err = detectors.ParseMaxTTLs(s.MaxTTLs); err != nil {
		bad("MAX_TTLS", "%v", err)
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"ISSUANCE_BURST_WINDOW", s.IssuanceBurstWindow}, {"DENIED_BURST_WINDOW", s.DeniedBurstWindow},
		{"ROOT_TOKEN_WINDOW", s.RootTokenWindow}, {"ISSUANCE_BURST_BASELINE_PERIOD", s.IssuanceBurstBaseline}} {
		if v.d < 0 || v.d%time.Minute != 0 || (v.d == 0 && v.name != "ISSUANCE_BURST_BASELINE_PERIOD") {
			bad(v.name, "not a positive whole number of minutes, e.g. 5m or 1h")
		}
	}
	for _, v := range []struct {
		name string
		n    int64
	}{{"ISSUANCE_BURST_THRESHOLD", s.IssuanceBurstThreshold}, {"DENIED_BURST_THRESHOLD", s.DeniedBurstThreshold},
		{"ISSUANCE_BURST_BASELINE_MIN", s.IssuanceBurstMin}} {
		if v.n < 1 {
			bad(v.name, "must be at least 1")
		}
	}
	if f := s.IssuanceBurstFactor; f >= 0 && f <= 1 {
		bad("ISSUANCE_BURST_BASELINE_FACTOR", "must be above 1, or negative to turn the baseline off")
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"FOREIGN_ADDRESS_GRACE", s.ForeignAddressGrace}, {"RULE_CLOCK_SKEW", s.RuleClockSkew}} {
		if v.d < 0 {
			bad(v.name, "must not be negative")
		}
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"SIGNAL_LOOKBACK", s.SignalLookback}, {"AUDIT_SILENCE_WINDOW", s.AuditSilenceWindow}, {"DEFAULT_MAX_TTL", s.DefaultMaxTTL}} {
		if v.d <= 0 {
			bad(v.name, "must be positive")
		}
	}
}

// signalRulesConfig is the detectors' configuration (after validate).
func (s Config) signalRulesConfig() detectors.SignalRulesConfig {
	cidrs, ttls := s.parsed().allowedCIDRs, s.parsed().maxTTLs
	baseline := s.IssuanceBurstBaseline
	factor := s.IssuanceBurstFactor
	if baseline == 0 {
		factor = -1
	}
	return detectors.SignalRulesConfig{
		IssuanceWindow: s.IssuanceBurstWindow, IssuanceThreshold: s.IssuanceBurstThreshold,
		IssuanceFactor: factor, IssuanceBaseline: baseline, IssuanceBaselineMin: s.IssuanceBurstMin,
		DeniedWindow: s.DeniedBurstWindow, DeniedThreshold: s.DeniedBurstThreshold,
		RootTokenWindow: s.RootTokenWindow, Lookback: s.SignalLookback, SilenceWindow: s.AuditSilenceWindow,
		MaxTTLs: ttls, DefaultMaxTTL: s.DefaultMaxTTL, AllowedCIDRs: cidrs,
		ForeignGrace: s.ForeignAddressGrace, ClockSkew: s.RuleClockSkew,
	}
}
