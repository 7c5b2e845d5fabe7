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
