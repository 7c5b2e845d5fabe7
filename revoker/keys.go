package revoker

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/leaseguard/leaseguard/internal/privfile"
)

// SigningKeyFile is the name of the key LoadOrCreateKeyPair keeps in the
// data directory.
const SigningKeyFile = "command-signing.key"

// filePrefix marks a key given as the path of a file that holds it.
const filePrefix = "file:"

// ParsePrivateKey parses a command signing key as given in
// LEASEGUARD_COMMAND_SIGNING_KEY: standard base64 of the 32-byte seed or
// of the 64-byte private key (seed then public key), or "file:<path>" of a
// file holding that text. Surrounding white space is ignored.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	s = strings.TrimSpace(s)
	if path, ok := strings.CutPrefix(s, filePrefix); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read signing key: %w", err)
		}
		s = strings.TrimSpace(string(b))
	}
	return decodePrivateKey(s)
}

func decodePrivateKey(s string) (ed25519.PrivateKey, error) {
	if s == "" {
		return nil, errors.New("signing key is empty")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("signing key is not standard base64")
	}
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		priv := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
		if !priv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(b[ed25519.SeedSize:])) {
			return nil, errors.New("signing key: public half does not match the seed")
		}
		return priv, nil
	default:
		return nil, fmt.Errorf("signing key is %d bytes, want %d (seed) or %d", len(b), ed25519.SeedSize, ed25519.PrivateKeySize)
	}
}

// ParsePublicKeys parses LEASEGUARD_COMMAND_VERIFY_KEYS: comma-separated
// standard base64 Ed25519 public keys (32 bytes each). White space around
// keys and empty entries are ignored; an empty string gives no keys.
func ParsePublicKeys(s string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(part)
		if err != nil {
			return nil, fmt.Errorf("verify key %d is not standard base64", i+1)
		}
		if len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("verify key %d is %d bytes, want %d", i+1, len(b), ed25519.PublicKeySize)
		}
		keys = append(keys, ed25519.PublicKey(b))
	}
	return keys, nil
}

// LoadOrCreateKeyPair returns the signing key kept in dataDir/
// command-signing.key, creating it (mode 0600, base64 of a random seed)
// if it does not exist; created reports that this call made it. Of
// processes racing to create it, one wins and the others read and return
// its key. A key file readable by group or others is refused.
func LoadOrCreateKeyPair(dataDir string) (priv ed25519.PrivateKey, created bool, err error) {
	return LoadOrCreateKeyFile(dataDir, SigningKeyFile)
}

// LoadOrCreateKeyFile is LoadOrCreateKeyPair for the key file name in
// dataDir (the evidence signing key is another file).
func LoadOrCreateKeyFile(dataDir, name string) (priv ed25519.PrivateKey, created bool, err error) {
	path := filepath.Join(dataDir, name)
	if priv, err := readKeyFile(path); !errors.Is(err, fs.ErrNotExist) {
		return priv, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data directory: %w", err)
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate signing key: %w", err)
	}
	created, err = privfile.CreateOnce(path, []byte(base64.StdEncoding.EncodeToString(priv.Seed())+"\n"))
	if err != nil {
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	if !created { // another process created it first: use theirs
		priv, err = readKeyFile(path)
	}
	return priv, created, err
}

// ReadKeyFile reads a key file LoadOrCreateKeyFile made, refusing one
// readable by group or others.
func ReadKeyFile(path string) (ed25519.PrivateKey, error) { return readKeyFile(path) }

func readKeyFile(path string) (ed25519.PrivateKey, error) {
	b, err := privfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	priv, err := decodePrivateKey(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return priv, nil
}
