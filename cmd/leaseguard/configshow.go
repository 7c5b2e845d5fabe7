package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/leaseguard/leaseguard/detectors"
)

// configCmd prints the effective configuration, secrets redacted: every
// setting with its value and where the value came from, then the rule
// modes, scope and targets as leaseguard reads them.
func configCmd(_ context.Context, m *Main, o configOptions) error {
	if o.markdown {
		fmt.Fprint(m.Stdout, configTable())
		return nil
	}
	environ := os.Environ()
	c, err := loadConfigFrom(environ, "")
	if err != nil {
		return err
	}
	rows := configRows(c, envMap(environ))
	if o.output == outputJSON {
		return renderConfigJSON(m.Stdout, rows)
	}
	return renderConfigTable(m.Stdout, rows)
}

// configRow is one line of `leaseguard config`.
type configRow struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Source is env (set in the environment, maybe empty), default (the
	// built-in default), or unset (neither: empty).
	Source string `json:"source"`
}

const (
	sourceEnv     = "env"
	sourceDefault = "default"
	sourceUnset   = "unset"
)

// configRows lists every setting of c, then what leaseguard makes of the
// enforcement settings (each rule's mode, the scope) and the targets.
// Secrets show as <redacted> and passwords in URLs as xxxxx.
func configRows(c Config, vars map[string]string) []configRow {
	source := func(s setting) string {
		switch _, set := vars[s.name]; {
		case set:
			return sourceEnv
		case s.hasDefault && s.def != "":
			return sourceDefault
		}
		return sourceUnset
	}
	var rows []configRow
	for _, s := range settings() {
		v := s.value(c)
		if s.secret && v != "" {
			v = "<redacted>"
		}
		rows = append(rows, configRow{Name: s.name, Value: redactURL(v), Source: source(s)})
	}
	return append(rows, c.derivedRows(vars)...)
}

// derivedRows are the parsed rule modes, enforcement scope and targets.
func (c Config) derivedRows(vars map[string]string) []configRow {
	var rows []configRow
	named := map[string]bool{}
	for _, e := range strings.Split(c.RuleModes, ",") {
		rule, _, _ := strings.Cut(e, "=")
		named[strings.TrimSpace(rule)] = true
	}
	modes := c.parsed().modes
	rules := make([]string, 0, len(detectors.DefaultModes))
	for r := range detectors.DefaultModes {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	for _, r := range rules {
		rows = append(rows, configRow{Name: "rule mode " + r, Value: string(modes.Mode(r)), Source: pick(named[r], sourceEnv, sourceDefault)})
	}
	scope := c.parsed().scope
	_, scopeSet := vars[env("ENFORCE_SCOPE")]
	rows = append(rows, configRow{Name: "enforce scope", Value: scopeText(scope.String()), Source: pick(scopeSet, sourceEnv, sourceDefault)})
	if c.DatabaseURL == "" && strings.TrimSpace(c.Targets) == "" {
		return rows // no state store, no default target
	}
	for _, t := range c.parsed().targets.Targets {
		rows = append(rows, configRow{Name: "target " + t.Name, Value: redactURL(t.URL), Source: sourceEnv})
	}
	return rows
}

func pick(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

// renderConfigTable prints rows as aligned columns, an empty value as "".
func renderConfigTable(w io.Writer, rows []configRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVALUE\tSOURCE")
	for _, r := range rows {
		v := r.Value
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, v, r.Source)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "\nRule modes and enforce scope are the configured starting point; `leaseguard scope show` prints the policy in force.")
	return err
}

// renderConfigJSON prints rows as one JSON array.
func renderConfigJSON(w io.Writer, rows []configRow) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// configTable renders every variable of Config as a Markdown table.
func configTable() string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, s := range settings() {
		def := s.def
		if def == "" {
			def = "(empty)"
		}
		desc := s.desc
		if s.secret {
			desc += " (secret: `leaseguard config` and error messages never print it)"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", s.name, def, strings.ReplaceAll(desc, "|", "\\|"))
	}
	return b.String()
}

var (
	urlScheme     = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://`)
	passwordParam = regexp.MustCompile(`(?i)(password=)[^ &]*`)
)

// redactURL hides the passwords of the URLs in s (one, or a list such as
// LEASEGUARD_TARGETS) and of password= parameters. A URL's user
// information runs to its last '@', so a password holding '@', '/' or ','
// is hidden whole.
func redactURL(s string) string {
	locs := urlScheme.FindAllStringIndex(s, -1)
	var b strings.Builder
	last := 0
	for i, loc := range locs {
		end := len(s)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		b.WriteString(s[last:loc[1]])
		seg := s[loc[1]:end]
		if at := strings.LastIndex(seg, "@"); at >= 0 {
			if colon := strings.Index(seg[:at], ":"); colon >= 0 {
				seg = seg[:colon+1] + "xxxxx" + seg[at:]
			} else if tokenScheme(s[loc[0]:loc[1]]) {
				seg = "xxxxx" + seg[at:] // NATS reads a lone user as a token
			}
		}
		b.WriteString(seg)
		last = end
	}
	b.WriteString(s[last:])
	return passwordParam.ReplaceAllString(b.String(), "${1}xxxxx")
}

// tokenScheme: in a NATS URL, user information without a password is an
// authentication token, a secret.
func tokenScheme(scheme string) bool {
	switch strings.ToLower(scheme) {
	case "nats://", "tls://", "ws://", "wss://":
		return true
	}
	return false
}
