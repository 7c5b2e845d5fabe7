package observer

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultInterval      = 5 * time.Second
	DefaultSubjectPrefix = "leaseguard.db"
	DefaultStream        = "LEASEGUARD_DB"
	DefaultReadTimeout   = 10 * time.Second
	DefaultPassTimeout   = 10 * time.Second
	DefaultPublishBatch  = 1000
	DefaultRetention     = 24 * time.Hour
	DefaultStreamMaxAge  = 7 * 24 * time.Hour
)

// Config configures the observer. Start from DefaultConfig, or leave fields
// zero: New fills them with the defaults.
type Config struct {
	// Interval between two passes over a target (LEASEGUARD_OBSERVE_INTERVAL).
	// Default 5s.
	Interval time.Duration
	// ManagedPattern selects the roles observed and published
	// (LEASEGUARD_MANAGED_ROLE_PATTERN). Default ^v-.
	ManagedPattern *regexp.Regexp
	// Databases limits the observer to these targets; empty: every target.
	Databases []string
	// SubjectPrefix: events are published on
	// <prefix>.<database>.role and <prefix>.<database>.session ('.' in a
	// target name becomes '_'). Default leaseguard.db.
	SubjectPrefix string
	// Stream captures <prefix>.> (EnsureStream). Default LEASEGUARD_DB.
	Stream string
	// StreamMaxAge bounds how long the stream keeps events. Default 7 days.
	StreamMaxAge time.Duration
	// StreamReplicas of the stream on a JetStream cluster. Default 1.
	StreamReplicas int
	// Holder names this process in the state store's observer_targets.
	// Default <host name>/<pid>.
	Holder string
	// ReadTimeout bounds one read of a target. Default 10s.
	ReadTimeout time.Duration
	// PassTimeout bounds the rest of a pass: the duty, the state-store
	// transaction and the publishing (a pass as a whole gets ReadTimeout +
	// PassTimeout). A pass that runs out is rolled back and tried again at
	// the next interval. Default 10s.
	PassTimeout time.Duration
	// PublishBatch is the most events published after one pass (the rest
	// follow after the next). Default 1000.
	PublishBatch int
	// Retention: ended sessions and published events are deleted from the
	// state store this long after they were observed. Role history is
	// kept. Default 24h.
	Retention time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{}.WithDefaults()
}

// WithDefaults fills unset fields with the defaults.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.ManagedPattern == nil {
		c.ManagedPattern = regexp.MustCompile(`^v-`)
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.StreamMaxAge == 0 {
		c.StreamMaxAge = DefaultStreamMaxAge
	}
	if c.Holder == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "leaseguard"
		}
		c.Holder = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.PassTimeout == 0 {
		c.PassTimeout = DefaultPassTimeout
	}
	if c.PublishBatch == 0 {
		c.PublishBatch = DefaultPublishBatch
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	return c
}

// Validate checks a configuration (after WithDefaults).
func (c Config) Validate() error {
	switch {
	case c.Interval <= 0:
		return errors.New("observe interval must be positive")
	case c.ReadTimeout <= 0 || c.PassTimeout <= 0 || c.StreamMaxAge <= 0 || c.Retention <= 0:
		return errors.New("observer: read and pass timeouts, stream max age and retention must be positive")
	case c.PublishBatch <= 0:
		return errors.New("observer: publish batch must be positive")
	case c.ManagedPattern == nil:
		return errors.New("observer: managed pattern is required")
	case c.Holder == "":
		return errors.New("observer: holder is required")
	case c.Stream == "" || strings.ContainsAny(c.Stream, ".*> \t"):
		return fmt.Errorf("observer: stream name %q is not valid", c.Stream)
	}
	for _, tok := range strings.Split(c.SubjectPrefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t") {
			return fmt.Errorf("observer: subject prefix %q is not a plain subject", c.SubjectPrefix)
		}
	}
	return nil
}

// Subject is the subject of a database's events of kind "role" or
// "session". A '.' in the target name would split it into two subject
// tokens: it becomes '_' (the event names the target exactly).
func (c Config) Subject(database, kind string) string {
	return c.SubjectPrefix + "." + strings.ReplaceAll(database, ".", "_") + "." + kind
}
