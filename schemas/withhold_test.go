package schemas

import (
	"encoding/json"
	"reflect"
	"testing"
)

// A path never carries the secret, even when keys that look harmless
// alone spell one when joined ("hvs" then "CAES…" is a Vault token): the
// step of the path that makes it look like one is itself withheld.
func TestWithholdPaths(t *testing.T) {
	const key = "CAESIJ4yD7sRkXoZ1tW0m3vQ8a"
	doc := `{"hvs":{"` + key + `":{"password":"x","n":"hvs.CAESIJ4yD7sRkXoZ1tW0m3vQ8aPu2nLbKcEhGfYjTdUiOqVx"}},` +
		`"list":[{"ok":"fine"},{"db_passwd":"y"},["s.abcdefghijklmnopqrstuvwx"]],"plain":"text","":{"passwd":"z"}}`
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	got, paths := Withhold(v, "$.data")
	want := []string{
		"$.data..passwd",
		"$.data.hvs." + Withheld + ".n",
		"$.data.hvs." + Withheld + ".password",
		"$.data.list[1].db_passwd",
		"$.data.list[2][0]",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths\n got %q\nwant %q", paths, want)
	}
	out, _ := json.Marshal(got)
	const wantDoc = `{"":{},"hvs":{"` + key + `":{"n":"` + Withheld + `"}},"list":[{"ok":"fine"},{},["` + Withheld + `"]],"plain":"text"}`
	if string(out) != wantDoc {
		t.Errorf("document\n got %s\nwant %s", out, wantDoc)
	}
}

// Withhold looks first, without ordering keys or keeping a path, whether
// there is anything to withhold: that look must agree with the walk.
func TestWithholdLooksAsItWalks(t *testing.T) {
	for _, doc := range []string{
		`{"a":"fine","b":{"c":[1,"two",{"d":null}]}}`,
		`{"a":"fine","b":{"c":[1,"two",{"d":"hvs.CAESIJ4yD7sRkXoZ1tW0m3vQ8aPu2nLbKcEhGfYjTdUiOqVx"}]}}`,
		`{"b":{"db_password":"x"},"a":"ok"}`,
		`{"list":[["nested","postgres://u:pw@h/db"]]}`,
		`{"note":"{\"secret_id\":\"s\"}"}`,
		`{"":{"":""}}`,
	} {
		var look, walk any
		if err := json.Unmarshal([]byte(doc), &look); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal([]byte(doc), &walk)
		w := withholder{root: "$"}
		w.walk(walk, nil)
		if HoldsSecret(look) != (len(w.paths) > 0) {
			t.Errorf("%s: withholds %v, the walk withheld %q", doc, HoldsSecret(look), w.paths)
		}
	}
}
