package ingest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/leaseguard/leaseguard/store"
)

// signalEntry builds an audit entry for the signal tests.
func signalEntry(typ, op, path, mountType, errText, policies string) string {
	mount := ""
	if mountType != "" {
		mount = fmt.Sprintf(`"mount_point":"postgres/","mount_type":%q,`, mountType)
	}
	e := ""
	if errText != "" {
		e = fmt.Sprintf(`,"error":%q`, errText)
	}
	resp := ""
	if typ == "response" {
		resp = `,"response":{}`
	}
	return fmt.Sprintf(`{"time":"2026-11-25T19:23:31.271320831Z","type":%q,
		"auth":{"accessor":"hmac-sha256:acc","display_name":"token-ci","entity_id":"ent-9","policies":[%s],"token_policies":[%s]},
		"request":{"id":"req-1","operation":%q,%s"path":%q,"remote_address":"10.1.2.3:4567","namespace":{"id":"root"}}%s%s}`,
		typ, policies, policies, op, mount, path, resp, e)
}

func TestNormalizeSignals(t *testing.T) {
	t.Parallel()
	const denied = "1 error occurred:\n\t* permission denied\n\n"
	type want struct {
		kind       store.SignalKind
		mount      string
		role       string
		deviceOp   string
		deviceResp bool
		deviceErr  bool
	}
	cases := []struct {
		name  string
		entry string
		want  want
	}{
		{"denied creds request on a database mount", signalEntry("request", "read", "postgres/creds/reporting", "database", denied, `"default"`),
			want{kind: store.SignalDeniedCreds, mount: "postgres", role: "reporting"}},
		{"denied creds request, mount type not logged", signalEntry("request", "read", "postgres/creds/reporting", "", denied, `"default"`),
			want{kind: store.SignalDeniedCreds, mount: "postgres", role: "reporting"}},
		{"denied creds response: the request entry counts", signalEntry("response", "read", "postgres/creds/reporting", "database", denied, `"default"`),
			want{}},
		{"denied on a kv mount", signalEntry("request", "read", "postgres/creds/reporting", "kv", denied, `"default"`), want{}},
		{"denied on another database path", signalEntry("request", "read", "postgres/roles/reporting", "database", denied, `"default"`), want{}},
		{"other error on a creds path", signalEntry("request", "read", "postgres/creds/reporting", "database", "internal error", `"default"`), want{}},
		{"root policy on a database mount", signalEntry("request", "update", "postgres/config/main", "database", "", `"root"`),
			want{kind: store.SignalRootUse, mount: "postgres"}},
		{"root reads creds", signalEntry("request", "read", "postgres/creds/reporting", "database", "", `"root"`),
			want{kind: store.SignalRootUse, mount: "postgres", role: "reporting"}},
		{"root response: the request entry counts", signalEntry("response", "read", "postgres/creds/reporting", "database", "", `"root"`), want{}},
		{"root on a kv mount", signalEntry("request", "read", "postgres/data/x", "kv", "", `"root"`), want{}},
		{"no root on a database mount", signalEntry("request", "read", "postgres/creds/reporting", "database", "", `"default","rootish"`), want{}},
		{"disable an audit device, request", signalEntry("request", "delete", "sys/audit/file", "system", "", `"root"`),
			want{deviceOp: store.AuditDeviceDisable}},
		{"disable an audit device, response", signalEntry("response", "delete", "sys/audit/file", "system", "", `"root"`),
			want{deviceOp: store.AuditDeviceDisable, deviceResp: true}},
		{"disable refused", signalEntry("response", "delete", "sys/audit/file", "system", denied, `"default"`),
			want{deviceOp: store.AuditDeviceDisable, deviceResp: true, deviceErr: true}},
		{"enable an audit device", signalEntry("response", "update", "sys/audit/socket", "system", "", `"root"`),
			want{deviceOp: store.AuditDeviceEnable, deviceResp: true}},
		{"Vault's test entry of a new device", `{"request":{"id":"t-1","namespace":{"id":"root"},"operation":"update","path":"sys/audit/test"},"time":"2026-11-25T19:23:31.271320831Z","type":"request"}`,
			want{}},
		{"list audit devices", signalEntry("request", "read", "sys/audit", "system", "", `"root"`), want{}},
		{"audit-hash is not a device change", signalEntry("request", "update", "sys/audit-hash/file", "system", "", `"root"`), want{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var d Decoder
			e, err := d.Decode(compact(t, tc.entry))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			n, err := Normalize(&e, testSource)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if !n.Time.Equal(e.Time) {
				t.Errorf("Time = %v, want %v", n.Time, e.Time)
			}
			switch {
			case tc.want.kind == "" && n.Signal != nil:
				t.Errorf("Signal = %+v, want none", *n.Signal)
			case tc.want.kind != "" && n.Signal == nil:
				t.Errorf("no Signal, want %s", tc.want.kind)
			case n.Signal != nil:
				s := n.Signal
				if s.Kind != tc.want.kind || s.Mount != tc.want.mount || s.Role != tc.want.role {
					t.Errorf("Signal = %s %s/%s, want %s %s/%s", s.Kind, s.Mount, s.Role, tc.want.kind, tc.want.mount, tc.want.role)
				}
				if s.RemoteAddress != "10.1.2.3" || s.EntityID != "ent-9" || s.TokenAccessor != "hmac-sha256:acc" || s.RequestID != "req-1" {
					t.Errorf("Signal identity = %+v", *s)
				}
			}
			switch {
			case tc.want.deviceOp == "" && n.Device != nil:
				t.Errorf("Device = %+v, want none", *n.Device)
			case tc.want.deviceOp != "" && n.Device == nil:
				t.Errorf("no Device, want %s", tc.want.deviceOp)
			case n.Device != nil:
				dv := n.Device
				if dv.Operation != tc.want.deviceOp || dv.Response != tc.want.deviceResp || dv.Error != tc.want.deviceErr ||
					dv.DevicePath != strings.TrimPrefix(e.Request.Path, "sys/audit/") || dv.RequestID != "req-1" || dv.RemoteAddress != "10.1.2.3" {
					t.Errorf("Device = %+v, want %+v", *dv, tc.want)
				}
			}
		})
	}
}

// TestFixtureSignals: in the real Vault 1.21.0 log a root token enabled
// the file device and configured the database mount and its role; alice
// (policy rep) was refused creds of role "other".
func TestFixtureSignals(t *testing.T) {
	t.Parallel()
	var d Decoder
	roots, denied, devices := map[string]int{}, map[string]int{}, 0
	for i, line := range fixtureLines(t) {
		e, err := d.Decode(line)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		n, err := Normalize(&e, testSource)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if n.Time.IsZero() {
			t.Errorf("line %d: no time", i+1)
		}
		if n.Signal != nil {
			switch n.Signal.Kind {
			case store.SignalRootUse:
				roots[e.Request.Path]++
			case store.SignalDeniedCreds:
				denied[n.Signal.Mount+"/"+n.Signal.Role+" "+n.Signal.EntityID+" "+n.Signal.RemoteAddress]++
			}
		}
		if n.Device != nil {
			devices++
			if n.Device.Operation != store.AuditDeviceEnable || n.Device.DevicePath != "file" || !n.Device.Response {
				t.Errorf("line %d: device %+v", i+1, *n.Device)
			}
		}
	}
	// Request entries only.
	if roots["postgres/config/main"] != 1 || roots["postgres/roles/reporting"] != 1 || len(roots) != 2 {
		t.Errorf("root uses = %v", roots)
	}
	if denied["postgres/other ffe23c2c-69ab-e043-c810-bf24e5df3f4b 127.0.0.1"] != 1 || len(denied) != 1 {
		t.Errorf("denied = %v", denied)
	}
	if devices != 1 {
		t.Errorf("device changes = %d, want the enable of file", devices)
	}
}
