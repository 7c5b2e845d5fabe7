package revoker

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"

	"github.com/leaseguard/leaseguard/schemas"
)

// SigningBytes returns the bytes a command's signature covers: the
// command with Signature cleared (KeyID stays, so the key is signed for),
// encoded by encoding/json. That encoding is canonical for this struct:
// fields come in declaration order, omitempty fields are left out when
// empty, times are RFC 3339 with nanoseconds, and strings are escaped the
// same way every time. Adding a field to RevocationCommand changes the
// bytes of every command that sets it, so older signers cannot sign it.
//
// It returns nil if the command cannot be encoded or holds a string that
// is not valid UTF-8 (json would replace its bytes, so two commands could
// share one encoding); Verify refuses such commands.
func SigningBytes(cmd schemas.RevocationCommand) []byte {
	b, err := signingBytes(cmd)
	if err != nil {
		return nil
	}
	return b
}

func signingBytes(cmd schemas.RevocationCommand) ([]byte, error) {
	cmd.Signature = ""
	v := reflect.ValueOf(cmd)
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String && !utf8.ValidString(f.String()) {
			return nil, fmt.Errorf("field %s is not valid UTF-8", v.Type().Field(i).Name)
		}
	}
	return json.Marshal(cmd)
}

// KeyID names a public key: the first 16 hex characters of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])[:16]
}

// Signer signs revocation commands with one Ed25519 key.
type Signer struct {
	priv  ed25519.PrivateKey
	keyID string
}

// NewSigner returns a Signer for priv. It panics if priv is not an
// Ed25519 private key (64 bytes); ParsePrivateKey returns only valid ones.
func NewSigner(priv ed25519.PrivateKey) *Signer {
	if len(priv) != ed25519.PrivateKeySize {
		panic(fmt.Sprintf("revoker: ed25519 private key is %d bytes, not %d", len(priv), ed25519.PrivateKeySize))
	}
	return &Signer{priv: priv, keyID: KeyID(priv.Public().(ed25519.PublicKey))}
}

// KeyID returns the key id the Signer puts on commands.
func (s *Signer) KeyID() string { return s.keyID }

// PublicKey returns the key that verifies the Signer's signatures.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Sign sets cmd.KeyID and cmd.Signature (standard base64). It fails only
// if the command cannot be encoded (see SigningBytes); cmd is then left
// unsigned.
func (s *Signer) Sign(cmd *schemas.RevocationCommand) error {
	signed := *cmd
	signed.KeyID = s.keyID
	msg, err := signingBytes(signed)
	if err != nil {
		return fmt.Errorf("sign command %q: %w", cmd.ID, err)
	}
	cmd.KeyID = s.keyID
	cmd.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg))
	return nil
}

// Verifier checks command signatures against a set of public keys.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier returns a Verifier trusting pubs. It fails if there is no
// key or one is not 32 bytes.
func NewVerifier(pubs ...ed25519.PublicKey) (*Verifier, error) {
	if len(pubs) == 0 {
		return nil, errors.New("verifier: no public keys")
	}
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(pubs))}
	for i, p := range pubs {
		if len(p) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("verifier: key %d is %d bytes, not %d", i, len(p), ed25519.PublicKeySize)
		}
		v.keys[KeyID(p)] = p
	}
	return v, nil
}

// Verify returns nil if cmd carries a valid signature by a trusted key,
// and otherwise a *Refusal with Guard "signature" and Reason "unsigned",
// "unknown key id …" or "signature does not verify…".
func (v *Verifier) Verify(cmd schemas.RevocationCommand) error {
	if cmd.Signature == "" {
		return refuse(GuardSignature, "unsigned")
	}
	pub, ok := v.keys[cmd.KeyID]
	if !ok {
		return refuse(GuardSignature, "unknown key id %q", cmd.KeyID)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(cmd.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return refuse(GuardSignature, "signature does not verify (not base64 of %d bytes)", ed25519.SignatureSize)
	}
	msg, err := signingBytes(cmd)
	if err != nil {
		return refuse(GuardSignature, "signature does not verify (%v)", err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return refuse(GuardSignature, "signature does not verify")
	}
	return nil
}
