// Package keyid names an Ed25519 public key the one way leaseguard does,
// for command signing keys and evidence checkpoint keys alike: a verifier
// of either finds the key by this name, so the two must never drift apart.
package keyid

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
)

// Of names a public key: the first 16 hex characters of the SHA-256 of its
// 32 bytes.
func Of(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])[:16]
}
