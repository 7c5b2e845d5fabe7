package rules_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const dashboardFile = "../grafana/leaseguard.json"

// query is one PromQL expression and where it comes from.
type query struct{ from, expr string }

// ruleQueries are the expressions of the alerting rules.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, query{"rule " + r.Alert + r.Record, r.Expr})
		}
	}
	return out
}

// dashboardQueries are the expressions of every panel (rows' panels
// included) and the selectors of the template variables' label_values().
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string
		Targets []struct{ Expr string }
		Panels  json.RawMessage
	}
	var d struct {
		Panels     []panel
		Templating struct {
			List []struct {
				Name, Type, Definition string
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var out []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, query{"panel " + p.Title, tg.Expr})
			}
			var sub []panel
			if len(p.Panels) > 0 {
				if err := json.Unmarshal(p.Panels, &sub); err != nil {
					t.Fatal(err)
				}
			}
			walk(sub)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
		}
		out = append(out, query{"variable " + v.Name, m[1]})
	}
	return out
}

// grafanaVars replaces Grafana's variables with what they stand for, so
// that the expression is PromQL.
func grafanaVars(expr string) string {
	return regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(expr, func(v string) string {
		switch strings.Trim(v, "${}") {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		}
		return ".+"
	})
}

// allQueries are the rules' and the dashboard's expressions, as PromQL.
func allQueries(t *testing.T) []query {
	t.Helper()
	qs := append(ruleQueries(t), dashboardQueries(t)...)
	for i := range qs {
		qs[i].expr = grafanaVars(qs[i].expr)
		if strings.TrimSpace(qs[i].expr) == "" {
			t.Fatalf("%s: empty expression", qs[i].from)
		}
	}
	return qs
}

// TestQueriesParse hands every expression to promtool as a recording rule
// of a temporary rule file: promtool check rules parses each one.
func TestQueriesParse(t *testing.T) {
	qs := allQueries(t)
	if len(qs) < 30 {
		t.Fatalf("only %d expressions found", len(qs))
	}
	out, err := checkQueries(t, qs)
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", len(qs))) {
		t.Errorf("promtool check rules:\n%s", out)
	}
}

// TestQueriesParseCatchesErrors: a broken expression fails the check.
func TestQueriesParseCatchesErrors(t *testing.T) {
	qs := []query{{"ok", "sum(rate(leaseguard_ingest_entries_total[5m]))"}, {"broken", "sum(rate(leaseguard_ingest_entries_total[5m])"}}
	if out, err := checkQueries(t, qs); err == nil {
		t.Fatalf("promtool accepted an unbalanced expression:\n%s", out)
	}
}

func checkQueries(t *testing.T, qs []query) (string, error) {
	t.Helper()
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range qs {
		rules = append(rules, rule{fmt.Sprintf("check:expr_%03d", i), q.expr})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "check", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "check.yml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, dir, "check", "rules", "check.yml")
	if err != nil {
		for i, q := range qs {
			out += fmt.Sprintf("\ncheck:expr_%03d = %s: %s", i, q.from, q.expr)
		}
	}
	return out, err
}

var (
	quoted   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	matchers = regexp.MustCompile(`\{[^}]*\}`)
	ranges   = regexp.MustCompile(`\[[^\]]*\]`)
	grouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	ident    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true, "atan2": true}
)

// metricNames are the metric names an expression selects: identifiers
// that are not functions, aggregations or keywords, once strings, label
// matchers, ranges and grouping labels are taken out.
func metricNames(expr string) []string {
	e := quoted.ReplaceAllString(expr, `""`)
	e = matchers.ReplaceAllString(e, " ")
	e = ranges.ReplaceAllString(e, " ")
	e = grouping.ReplaceAllString(e, " ")
	seen := map[string]bool{}
	for _, loc := range ident.FindAllStringIndex(e, -1) {
		name := e[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(e[loc[0]-1:loc[0]], "0123456789.") {
			continue // part of a number or duration: 6e1, 15m
		}
		if strings.HasPrefix(strings.TrimSpace(e[loc[1]:]), "(") || keywords[name] {
			continue // a function or aggregation call, or a keyword
		}
		seen[name] = true
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestMetricNames checks the extractor itself on cases written by hand.
func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`up`: "up",
		`histogram_quantile(0.9, sum by (job, le) (rate(leaseguard_ingest_lag_seconds_bucket{job=~".+"}[5m]))) > 60`: "leaseguard_ingest_lag_seconds_bucket",
		`a == 0 and on (job, instance) increase(b{transport="file"}[5m]) > 0`:                                        "a b",
		`sum by (x) (c unless c offset 15m) > 0 or time() - d > 900`:                                                 "c d",
		`(e > 0) - time() < 900 and on (job) f == 1`:                                                                 "e f",
		`max by (worker) (g{worker="detectors.expiry"}) > 6e1`:                                                       "g",
		`sum(rate(h:recorded[5m])) by (le)`:                                                                          "h:recorded",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}
