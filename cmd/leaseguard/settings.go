package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agnivade/levenshtein"
	envparse "github.com/caarlos0/env/v11"
)

// setting is one environment variable of Config, as its tags describe it:
// env (the name), envDefault, desc, and secret:"true" for a value that is
// never printed.
type setting struct {
	name       string
	field      string // the Go field, as env's errors name it
	index      []int
	typ        reflect.Type
	def        string
	hasDefault bool
	desc       string
	secret     bool
}

var durationType = reflect.TypeOf(time.Duration(0))

// settings lists every variable of Config in declaration order.
var settings = sync.OnceValue(func() []setting {
	var out []setting
	seen := map[string]bool{}
	for _, f := range reflect.VisibleFields(reflect.TypeOf(Config{})) {
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		if seen[f.Name] || seen[name] {
			panic("config: field " + f.Name + " or variable " + name + " declared twice")
		}
		seen[f.Name], seen[name] = true, true
		def, has := f.Tag.Lookup("envDefault")
		out = append(out, setting{name: name, field: f.Name, index: f.Index, typ: f.Type,
			def: def, hasDefault: has, desc: f.Tag.Get("desc"), secret: f.Tag.Get("secret") == "true"})
	}
	return out
})

func settingNamed(name string) (setting, bool) {
	for _, s := range settings() {
		if s.name == name {
			return s, true
		}
	}
	return setting{}, false
}

// settingErr is an error about one setting, named without its prefix.
type settingErr struct {
	name string
	err  error
}

func (e settingErr) Error() string { return env(e.name) + ": " + e.err.Error() }
func (e settingErr) Unwrap() error { return e.err }

// badSetting reports err against the setting it names, else fallback.
func badSetting(bad badFunc, fallback string, err error) {
	var se settingErr
	if errors.As(err, &se) {
		bad(se.name, "%v", se.err)
		return
	}
	bad(fallback, "%v", err)
}

// problem is one configuration error: the variable it is about and the
// whole line said about it.
type problem struct {
	name string
	line string
}

// problems are every configuration error found at once.
type problems []problem

// Error is one line per problem, sorted; several get a header line.
func (ps problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.line
	}
	sort.Strings(lines)
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("invalid configuration (%d errors):\n%s", len(lines), strings.Join(lines, "\n"))
}

// configError marks invalid configuration (exit 3).
type configError struct{ err error }

func (e configError) Error() string {
	var ps problems
	if errors.As(e.err, &ps) {
		return ps.Error()
	}
	return "configuration: " + e.err.Error()
}
func (e configError) Unwrap() error { return e.err }

// loadConfig reads and validates the settings of a command that does not
// open the state store.
func loadConfig() (Config, error) { return loadConfigFrom(os.Environ(), "") }

// loadStoreConfig reads and validates the settings of a command that opens
// the state store: LEASEGUARD_DATABASE_URL is required.
func loadStoreConfig(command string) (Config, error) { return loadConfigFrom(os.Environ(), command) }

// loadConfigFrom reads Config from environ ("NAME=value" pairs) and reports
// every problem at once: variables that look like settings but are none,
// values that do not parse, a missing state store for storeFor (the
// command that needs it; "" for none), and what Validate refuses.
func loadConfigFrom(environ []string, storeFor string) (Config, error) {
	vars := envMap(environ)
	ps := unknownSettings(vars)
	c, parsed, failed := parseSettings(vars)
	ps = append(ps, parsed...)
	if storeFor != "" && c.DatabaseURL == "" {
		ps = append(ps, databaseRequired(storeFor))
	}
	var refused problems
	c.typed, refused = c.parse()
	for _, p := range refused {
		if !failed[p.name] { // a value that did not parse is reported once
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return c, configError{ps}
	}
	return c, nil
}

func databaseRequired(command string) problem {
	return problem{name: env("DATABASE_URL"), line: fmt.Sprintf("%s is required by %s: the PostgreSQL URL of leaseguard's state store, "+
		"e.g. postgres://leaseguard@db.example:5432/leaseguard", env("DATABASE_URL"), command)}
}

func envMap(environ []string) map[string]string {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

// unknownSettings refuses LEASEGUARD_ variables that are no setting (in
// any letter case): a misspelled setting would otherwise be ignored and
// its default silently used.
func unknownSettings(vars map[string]string) problems {
	var ps problems
	prefix := envPrefix + "_"
	for name := range vars {
		if !strings.HasPrefix(strings.ToUpper(name), prefix) {
			continue
		}
		if _, ok := settingNamed(name); ok {
			continue
		}
		line := name + " is not a leaseguard setting"
		if near := closestSetting(name); near != "" {
			line += "; did you mean " + near + "?"
		}
		ps = append(ps, problem{name: name, line: line})
	}
	return ps
}

// closestSetting is the setting nearest to name by edit distance, or ""
// when none is near enough to be what was meant.
func closestSetting(name string) string {
	prefix := envPrefix + "_"
	want := strings.TrimPrefix(strings.ToUpper(name), prefix)
	best, bestD := "", 0
	for _, s := range settings() {
		d := levenshtein.ComputeDistance(want, strings.TrimPrefix(s.name, prefix))
		if best == "" || d < bestD {
			best, bestD = s.name, d
		}
	}
	if bestD > max(2, len(want)/4) {
		return ""
	}
	return best
}

// parseSettings fills Config from vars. A variable set to the empty string
// is set: a text setting becomes empty (LEASEGUARD_LEASE_SUBJECT= turns the
// lease subject off), any other must have a value. It returns the values
// that did not parse, and their names.
func parseSettings(vars map[string]string) (Config, problems, map[string]bool) {
	var c Config
	err := envparse.ParseWithOptions(&c, envparse.Options{Environment: vars})
	var ps problems
	failed := map[string]bool{}
	fail := func(s setting, value string, err error) {
		if !failed[s.name] {
			failed[s.name] = true
			ps = append(ps, problem{name: s.name, line: s.echo(value) + ": " + s.expected(err)})
		}
	}
	for _, s := range settings() {
		if v, set := vars[s.name]; set && v == "" {
			if s.typ.Kind() == reflect.String {
				reflect.ValueOf(&c).Elem().FieldByIndex(s.index).SetString("")
			} else {
				fail(s, v, nil)
			}
		}
	}
	var agg envparse.AggregateError
	if errors.As(err, &agg) {
		for _, e := range agg.Errors {
			var pe envparse.ParseError
			s, ok := setting{}, false
			if errors.As(e, &pe) {
				s, ok = settingByField(pe.Name)
			}
			if !ok { // not a value's fault: a field the library cannot fill
				ps = append(ps, problem{line: "configuration: " + e.Error()})
				continue
			}
			fail(s, vars[s.name], pe.Err)
		}
	} else if err != nil {
		ps = append(ps, problem{line: "configuration: " + err.Error()})
	}
	return c, ps, failed
}

func settingByField(field string) (setting, bool) {
	for _, s := range settings() {
		if s.field == field {
			return s, true
		}
	}
	return setting{}, false
}

// expected says what form a value of s must have.
func (s setting) expected(err error) string {
	switch {
	case s.typ == durationType:
		return "not a duration; write a number and a unit, e.g. 500ms, 30s, 5m or 1h"
	case s.typ.Kind() >= reflect.Int && s.typ.Kind() <= reflect.Uint64:
		if errors.Is(err, strconv.ErrRange) {
			return "a whole number out of range"
		}
		return "not a whole number"
	case s.typ.Kind() == reflect.Float32 || s.typ.Kind() == reflect.Float64:
		return "not a number"
	case s.typ.Kind() == reflect.Bool:
		return "not true or false"
	}
	return "not a valid value"
}

// echo is how a message shows the variable and its value: quoted, with
// passwords in URLs hidden; a secret's value never.
func (s setting) echo(value string) string {
	if s.secret {
		return s.name + "=<redacted>"
	}
	return s.name + "=" + strconv.Quote(redactURL(value))
}

// value is s's effective value in c as text (durations as short as they
// go: 1h, not 1h0m0s), unredacted.
func (s setting) value(c Config) string {
	v := reflect.ValueOf(c).FieldByIndex(s.index)
	switch {
	case s.typ == durationType:
		return shortDuration(time.Duration(v.Int()))
	case v.Kind() == reflect.String:
		return v.String()
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case v.CanInt():
		return strconv.FormatInt(v.Int(), 10)
	case v.CanUint():
		return strconv.FormatUint(v.Uint(), 10)
	case v.CanFloat():
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	}
	return fmt.Sprint(v.Interface())
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
