package revoker

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

func testKey(t *testing.T, seed byte) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func signedCommand(t *testing.T, s *Signer) schemas.RevocationCommand {
	t.Helper()
	cmd := command("v-token-readonly-abc-1795634398")
	cmd.IssuedAt = time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	cmd.LeaseID = "database/creds/readonly/AbCdEfGhIjKlMnOpQrStUvWx"
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

	// The signature covers every field, the key id included.
	for name, tamper := range map[string]func(*schemas.RevocationCommand){
		"db_user":   func(c *schemas.RevocationCommand) { c.DBUser = "v-token-readonly-abc-1795634399" },
		"database":  func(c *schemas.RevocationCommand) { c.Database = "other" },
		"emergency": func(c *schemas.RevocationCommand) { c.Emergency = true },
		"issued_at": func(c *schemas.RevocationCommand) { c.IssuedAt = c.IssuedAt.Add(time.Nanosecond) },
		"lease_id":  func(c *schemas.RevocationCommand) { c.LeaseID = "" },
	} {
		c := cmd
		tamper(&c)
		err := v.Verify(c)
		if err == nil {
			t.Errorf("tampered %s verifies", name)
			continue
		}
		wantSignatureRefusal(t, err, "signature does not verify")
	}
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
	bad := command("v-\xff")
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
	if SigningBytes(command("v-\xff")) != nil {
		t.Error("signing bytes of invalid UTF-8")
	}
}
