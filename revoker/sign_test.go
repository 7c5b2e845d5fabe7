package revoker

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

func testKey(t *testing.T, seed byte) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// fullCommand sets every field of the signed payload, so tampering with any
// of them can be tried.
func fullCommand(user string) schemas.RevocationCommand {
	at := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	return schemas.RevocationCommand{
		Type: schemas.RevocationCommandType, ID: "cmd-" + user, Action: schemas.ActionDropRole,
		IssuedAt: at, ExpiresAt: at.Add(10 * time.Minute), Nonce: "0123456789abcdef0123456789abcdef",
		Issuer: "detector", Actor: "alice", Rule: "lease-expired-not-revoked", FindingID: "f-1", Database: "main",
		Target: schemas.TargetIdentity{SystemIdentifier: "7716256923339417742", DatabaseOID: 16384},
		DBUser: user, RoleOID: 24601, LeaseID: "database/creds/readonly/AbCdEfGhIjKlMnOpQrStUvWx",
		Session: &schemas.SessionRef{PID: 4711, BackendStart: at.Add(-time.Hour), UserOID: 24601},
		Reason:  "lease expired",
		Corroboration: schemas.Corroboration{Source: schemas.CorroboratedByValidUntil, CheckedAt: at.Add(-time.Second),
			Detail: "rolvaliduntil has passed"},
		Emergency: false,
	}
}

func signedCommand(t *testing.T, s *Signer) schemas.RevocationCommand {
	t.Helper()
	cmd := fullCommand("v-token-readonly-abc-1795634398")
	if err := s.Sign(&cmd); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func wantSignatureRefusal(t *testing.T, err error, reason string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) || r.Guard != GuardSignature || !strings.HasPrefix(r.Reason, reason) {
		t.Errorf("Verify = %v, want signature refusal %q", err, reason)
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	priv := testKey(t, 1)
	s := NewSigner(priv)
	v, err := NewVerifier(testKey(t, 9).Public().(ed25519.PublicKey), s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	cmd := signedCommand(t, s)
	if cmd.KeyID != KeyID(priv.Public().(ed25519.PublicKey)) || len(cmd.KeyID) != 16 || cmd.Signature == "" {
		t.Fatalf("key id %q, signature %q", cmd.KeyID, cmd.Signature)
	}
	if err := v.Verify(cmd); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// Through the wire: encode, decode, verify.
	wire, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.RevocationCommand
	if err := json.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(got); err != nil {
		t.Fatalf("Verify after JSON round trip: %v", err)
	}

}

// tamperings change one field of the signed payload each; the keys are the
// fields' JSON paths. TestSignatureCoversEveryField checks that every field
// of RevocationCommand but the signature has one.
var tamperings = map[string]func(*schemas.RevocationCommand){
	"type":                     func(c *schemas.RevocationCommand) { c.Type = "io.leaseguard.revocation_command.v1" },
	"id":                       func(c *schemas.RevocationCommand) { c.ID += "x" },
	"action":                   func(c *schemas.RevocationCommand) { c.Action = schemas.ActionTerminateSession },
	"issued_at":                func(c *schemas.RevocationCommand) { c.IssuedAt = c.IssuedAt.Add(time.Nanosecond) },
	"expires_at":               func(c *schemas.RevocationCommand) { c.ExpiresAt = c.ExpiresAt.Add(time.Hour) },
	"nonce":                    func(c *schemas.RevocationCommand) { c.Nonce = "ffffffffffffffffffffffffffffffff" },
	"issuer":                   func(c *schemas.RevocationCommand) { c.Issuer = "approval" },
	"actor":                    func(c *schemas.RevocationCommand) { c.Actor = "" },
	"rule":                     func(c *schemas.RevocationCommand) { c.Rule = "orphan-role" },
	"finding_id":               func(c *schemas.RevocationCommand) { c.FindingID = "f-2" },
	"database":                 func(c *schemas.RevocationCommand) { c.Database = "other" },
	"target.system_identifier": func(c *schemas.RevocationCommand) { c.Target.SystemIdentifier = "1" },
	"target.database_oid":      func(c *schemas.RevocationCommand) { c.Target.DatabaseOID++ },
	"db_user":                  func(c *schemas.RevocationCommand) { c.DBUser = "v-token-readonly-abc-1795634399" },
	"role_oid":                 func(c *schemas.RevocationCommand) { c.RoleOID++ },
	"session.pid":              func(c *schemas.RevocationCommand) { c.Session.PID++ },
	"session.backend_start": func(c *schemas.RevocationCommand) {
		c.Session.BackendStart = c.Session.BackendStart.Add(time.Microsecond)
	},
	"session.user_oid":     func(c *schemas.RevocationCommand) { c.Session.UserOID++ },
	"lease_id":             func(c *schemas.RevocationCommand) { c.LeaseID = "" },
	"reason":               func(c *schemas.RevocationCommand) { c.Reason += "!" },
	"corroboration.source": func(c *schemas.RevocationCommand) { c.Corroboration.Source = schemas.CorroboratedByOperator },
	"corroboration.checked_at": func(c *schemas.RevocationCommand) {
		c.Corroboration.CheckedAt = c.Corroboration.CheckedAt.Add(time.Second)
	},
	"corroboration.detail": func(c *schemas.RevocationCommand) { c.Corroboration.Detail = "" },
	"emergency":            func(c *schemas.RevocationCommand) { c.Emergency = true },
	"key_id":               func(c *schemas.RevocationCommand) { c.KeyID = "0000000000000000" },
}

// TestSignatureCoversEveryField tampers with each field of a signed
// command, one at a time, nested ones included: each tampered command is
// refused by the signature guard.
func TestSignatureCoversEveryField(t *testing.T) {
	t.Parallel()
	s := NewSigner(testKey(t, 1))
	v, err := NewVerifier(s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range jsonPaths(reflect.TypeOf(schemas.RevocationCommand{}), "") {
		if path == "signature" {
			continue
		}
		tamper, ok := tamperings[path]
		if !ok {
			t.Errorf("field %s is not tampered with: add it to tamperings", path)
			continue
		}
		t.Run(path, func(t *testing.T) {
			c := signedCommand(t, s)
			c.Session = new(*c.Session)
			tamper(&c)
			var r *Refusal
			if err := v.Verify(c); !errors.As(err, &r) || r.Guard != GuardSignature {
				t.Errorf("tampered %s: Verify = %v, want a refusal by guard %s", path, err, GuardSignature)
			}
		})
	}
}

// jsonPaths lists the JSON paths of t's leaf fields (structs other than
// time.Time are walked).
func jsonPaths(t reflect.Type, prefix string) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
			out = append(out, jsonPaths(ft, prefix+name+".")...)
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	s := NewSigner(testKey(t, 1))
	other := NewSigner(testKey(t, 2))
	v, err := NewVerifier(s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	cmd := signedCommand(t, s)

	unsigned := cmd
	unsigned.Signature = ""
	wantSignatureRefusal(t, v.Verify(unsigned), "unsigned")

	wantSignatureRefusal(t, v.Verify(signedCommand(t, other)), "unknown key id")

	// Signed by another key, labelled with the trusted key's id.
	forged := signedCommand(t, other)
	forged.KeyID = s.KeyID()
	wantSignatureRefusal(t, v.Verify(forged), "signature does not verify")

	garbled := cmd
	garbled.Signature = "not base64!"
	wantSignatureRefusal(t, v.Verify(garbled), "signature does not verify")

	short := cmd
	short.Signature = cmd.Signature[:20]
	wantSignatureRefusal(t, v.Verify(short), "signature does not verify")

	// A string json would rewrite cannot be signed or verified.
	bad := fullCommand("v-\xff")
	if err := s.Sign(&bad); err == nil || bad.Signature != "" {
		t.Errorf("signed invalid UTF-8: %v", err)
	}
	bad.KeyID, bad.Signature = cmd.KeyID, cmd.Signature
	wantSignatureRefusal(t, v.Verify(bad), "signature does not verify")

	if _, err := NewVerifier(); err == nil {
		t.Error("NewVerifier() with no key succeeded")
	}
	if _, err := NewVerifier(ed25519.PublicKey{1, 2, 3}); err == nil {
		t.Error("NewVerifier accepted a 3-byte key")
	}
}

func TestSigningBytes(t *testing.T) {
	t.Parallel()
	s := NewSigner(testKey(t, 1))
	cmd := signedCommand(t, s)
	b := SigningBytes(cmd)
	if bytes.Contains(b, []byte(`"signature"`)) || !bytes.Contains(b, []byte(`"key_id":"`+s.KeyID()+`"`)) {
		t.Errorf("signing bytes %s", b)
	}
	unsigned := cmd
	unsigned.Signature = ""
	if !bytes.Equal(b, SigningBytes(unsigned)) {
		t.Error("signing bytes depend on the signature")
	}
	if !bytes.HasPrefix(b, []byte(`{"type":"`+schemas.RevocationCommandType+`","id":"cmd-`)) {
		t.Errorf("field order: %s", b)
	}
	if SigningBytes(fullCommand("v-\xff")) != nil {
		t.Error("signing bytes of invalid UTF-8")
	}
}
