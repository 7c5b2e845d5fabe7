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
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/leaseguard/leaseguard/internal/keyid"
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
	if path, ok := invalidUTF8(reflect.ValueOf(cmd), "command"); !ok {
		return nil, fmt.Errorf("field %s is not valid UTF-8", path)
	}
	return json.Marshal(cmd)
}

// invalidUTF8 walks v (structs, pointers to them) and reports the first
// string field that is not valid UTF-8.
func invalidUTF8(v reflect.Value, path string) (string, bool) {
	switch v.Kind() {
	case reflect.String:
		return path, utf8.ValidString(v.String())
	case reflect.Pointer:
		if v.IsNil() {
			return "", true
		}
		return invalidUTF8(v.Elem(), path)
	case reflect.Struct:
		if v.Type() == timeType {
			return "", true
		}
		for i := range v.NumField() {
			if p, ok := invalidUTF8(v.Field(i), path+"."+v.Type().Field(i).Name); !ok {
				return p, false
			}
		}
	}
	return "", true
}

var timeType = reflect.TypeOf(time.Time{})

// MessageID is the JetStream de-duplication id of a command as published:
// the hex SHA-256 of its encoded bytes, signature included. Nobody without
// the signing key can know it before the command exists, so nobody can
// occupy it in advance; the same command published twice has the same id.
func MessageID(body []byte) string { return CommandHash(body) }

// CommandHash is the hex SHA-256 of a command's bytes as received: the key
// of a refusal recorded before the command's own id may be used.
func CommandHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// KeyID names a public key (package keyid).
func KeyID(pub ed25519.PublicKey) string { return keyid.Of(pub) }

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

// KeyIDs lists the ids of the trusted keys, sorted.
func (v *Verifier) KeyIDs() []string {
	ids := make([]string, 0, len(v.keys))
	for id := range v.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
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

// proposalDomain prefixes what a proposal signature covers, so that a
// signed proposal can never pass for a signed command (and the reverse).
const proposalDomain = "leaseguard.revocation_proposal.v1\x00"

func proposalBytes(p schemas.RevocationCommand) ([]byte, error) {
	p.KeyID, p.Signature = "", ""
	b, err := signingBytes(p)
	if err != nil {
		return nil, err
	}
	return append([]byte(proposalDomain), b...), nil
}

// SignProposal signs a proposal held for an owner's approval (an unsigned
// command of a rule in approve mode), so that the approval can check that
// this installation proposed it and nobody changed it in the state store.
// It returns "<key id>:<base64 signature>". The proposal itself stays
// unsigned as a command: republished on the bus, the revoker refuses it.
func (s *Signer) SignProposal(p schemas.RevocationCommand) (string, error) {
	msg, err := proposalBytes(p)
	if err != nil {
		return "", fmt.Errorf("sign proposal %q: %w", p.ID, err)
	}
	return s.keyID + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg)), nil
}

// VerifyProposal checks a proposal signature made by SignProposal with a
// trusted key; it returns a *Refusal with guard signature otherwise.
func (v *Verifier) VerifyProposal(p schemas.RevocationCommand, sig string) error {
	keyID, b64, ok := strings.Cut(sig, ":")
	if !ok || sig == "" {
		return refuse(GuardSignature, "the proposal is not signed")
	}
	pub, ok := v.keys[keyID]
	if !ok {
		return refuse(GuardSignature, "unknown key id %q", keyID)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return refuse(GuardSignature, "proposal signature does not verify (not base64 of %d bytes)", ed25519.SignatureSize)
	}
	msg, err := proposalBytes(p)
	if err != nil || !ed25519.Verify(pub, msg, raw) {
		return refuse(GuardSignature, "proposal signature does not verify")
	}
	return nil
}
