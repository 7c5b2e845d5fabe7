package evidence

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// BenchmarkBuildAndCut is the evidence work of one expired lease before the
// chain head is taken: its finding and its revocation built, checked and
// cut around their seals.
func BenchmarkBuildAndCut(b *testing.B) {
	bld := testBuilder()
	cmd := sampleCommand(7)
	res := sampleResult(cmd, schemas.OutcomeDropped)
	f := sampleFinding(7)
	b.ReportAllocs()
	for b.Loop() {
		fev, err := bld.Finding(f, sampleLease(7))
		if err != nil {
			b.Fatal(err)
		}
		rev, err := bld.Revocation(cmd, res, sampleLease(7))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := prepareAppend([]Event{fev, rev}); err != nil {
			b.Fatal(err)
		}
	}
}

// The Builder checks an event and cuts it for its seal once, when it
// builds it; appending it unchanged takes that work as it is. Before,
// AppendMany encoded each event twice more, parsed it again and wrote its
// canonical form again (about 400 allocations an event), a fifth of the
// revoker's CPU.
func TestAppendingABuiltEventDoesNotCheckItAgain(t *testing.T) {
	for _, ev := range sampleEvents(t, 2) {
		appending := testing.AllocsPerRun(50, func() {
			if _, err := prepareAppend([]Event{ev}); err != nil {
				t.Fatal(err)
			}
		})
		// The ten argument arrays, and a little room.
		if appending > 12 {
			t.Errorf("%s event: preparing its append allocates %.0f times, want at most 12", ev.Type, appending)
		}
	}
}

// AppendMany takes the Builder's check only for an event exactly as built:
// a change to any field, of any field Event has or will have, or to the
// bytes of its data in place, makes it check the event again.
func TestEveryChangeAfterBuildIsSeen(t *testing.T) {
	built := sampleEvents(t, 1)[0]
	ty := reflect.TypeOf(built)
	for i := range ty.NumField() {
		f := ty.Field(i)
		if !f.IsExported() {
			continue
		}
		ev := built
		v := reflect.ValueOf(&ev).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Int64:
			v.SetInt(v.Int() + 1)
		case reflect.Slice:
			v.SetBytes(append(bytes.Clone(v.Bytes()), ' '))
		case reflect.Struct: // time.Time
			v.Set(reflect.ValueOf(built.Time.Add(time.Nanosecond)))
		default:
			t.Fatalf("field %s of kind %s: teach this test to change it", f.Name, v.Kind())
		}
		if unchanged(ev, built.prepared.of) {
			t.Errorf("a change to %s is not seen", f.Name)
		}
	}
	ev := built
	ev.Data[len(ev.Data)-2] ^= 1
	if unchanged(ev, built.prepared.of) {
		t.Error("a change to the data's bytes in place is not seen")
	}
	if !unchanged(sampleEvents(t, 1)[0], built.prepared.of) {
		t.Error("an event built the same way counts as changed")
	}
}

// The relay hashes a stored row it has just decoded without scanning it
// for validity again; the hash must be the one Seal and verify compute,
// and a row with a key twice must still be refused.
func TestHashDecodedIsHashDocument(t *testing.T) {
	for _, ev := range sampleEvents(t, 4) {
		ev, raw := sealed(t, ev)
		want, err := hashDocument(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := hashDecoded(raw); err != nil || got != want || got != ev.Hash {
			t.Errorf("hashDecoded = %s, %v; hashDocument %s, sealed %s", got, err, want, ev.Hash)
		}
	}
	if _, err := hashDecoded([]byte(`{"id":"a","id":"b"}`)); err == nil {
		t.Error("a row with a key twice was hashed")
	}
}

// The last gate looks for secrets without ordering keys, and walks again
// in order only to name the first place: both must agree on every
// document, and the place named is the first in key order.
func TestGateLooksAsItWalks(t *testing.T) {
	const token = "hvs.CAESIJ4yD7sRkXoZ1tW0m3vQ8aPu2nLbKcEhGfYjTdUiOqVx"
	for _, doc := range []string{
		`{"a":"fine","b":{"c":[1,"two",{"d":null}]}}`,
		`{"a":"fine","b":{"c":[1,"two",{"d":"` + token + `"}]}}`,
		`{"b":{"db_password":"x"},"a":"ok"}`,
		`{"list":[["nested","postgres://u:pw@h/db"]]}`,
		`{"z":"` + token + `","y":{"x":"ALTER ROLE r PASSWORD 'p'"}}`,
		`{"note":"{\"secret_id\":\"s\"}"}`,
		`{"":{"":""}}`,
		`{"legacy":"s.AAAAAAAAAAAAAAAAAAAAAAAA"}`,
		`{"dash":"hvs.-AAAAAAAAAAAAAAAAAAAAAAAA"}`,
	} {
		v, err := parseJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		walked := walkSecrets(v, nil)
		if schemas.HoldsSecret(v) != (walked != nil) {
			t.Errorf("%s: holdsSecret %v, walkSecrets %v", doc, schemas.HoldsSecret(v), walked)
		}
		if got := refuseSecrets(v); (got == nil) != (walked == nil) || (got != nil && got.Error() != walked.Error()) {
			t.Errorf("%s: refuseSecrets %v, walkSecrets %v", doc, got, walked)
		}
	}
	v, _ := parseJSON([]byte(`{"z":"` + token + `","y":{"x":"ALTER ROLE r PASSWORD 'p'"}}`))
	for range 20 { // map order varies from run to run
		if err := refuseSecrets(v); err == nil || !strings.Contains(err.Error(), "$.y.x") {
			t.Fatalf("refused %v, want the first place in key order, $.y.x", err)
		}
	}
}
