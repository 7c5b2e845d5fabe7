package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/revoker"
)

// commandAuth returns the issuer of revocation commands (which signs them
// with the command key and fills in what the revoker checks from targets)
// and the verifier the revoker checks them with.
func commandAuth(cfg Config, logger *slog.Logger, targets revoker.TargetFacts) (*revoker.Issuer, *revoker.Verifier, error) {
	signer, verifier, err := commandKeys(cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	issuer, err := revoker.NewIssuer(signer, targets, cfg.CommandTTL, nil)
	if err != nil {
		return nil, nil, configError{fmt.Errorf("%s: %w", env("COMMAND_TTL"), err)}
	}
	return issuer, verifier, nil
}

// commandKeys returns the key that signs revocation commands and the
// verifier the revoker checks them with. Without a configured signing key,
// a key pair is created in DATA_DIR on first start (single node).
func commandKeys(cfg Config, logger *slog.Logger) (*revoker.Signer, *revoker.Verifier, error) {
	priv := cfg.parsed().signingKey
	var err error
	if priv == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", env("DATA_DIR"), err)
		}
		var created bool
		if priv, created, err = revoker.LoadOrCreateKeyPair(cfg.DataDir); err != nil {
			return nil, nil, err
		}
		if created {
			logger.Info("created a command signing key; set LEASEGUARD_COMMAND_SIGNING_KEY to share one across nodes", "dir", cfg.DataDir)
		}
	}
	signer := revoker.NewSigner(priv)
	pubs := cfg.parsed().verifyKeys
	verifier, err := revoker.NewVerifier(append(slices.Clone(pubs), signer.PublicKey())...)
	if err != nil {
		return nil, nil, err
	}
	return signer, verifier, nil
}

// EvidenceKeyFile is the evidence signing key kept in DATA_DIR when
// LEASEGUARD_EVIDENCE_SIGNING_KEY is empty.
const EvidenceKeyFile = "evidence-signing.key"

// evidenceSigner returns the key that signs evidence checkpoints. Without
// a configured key, one is created in DATA_DIR on first start, next to
// (never the same as) the command key.
func evidenceSigner(cfg Config, logger *slog.Logger) (*evidence.CheckpointSigner, error) {
	priv := cfg.parsed().evidenceKey
	if priv == nil {
		var created bool
		var err error
		if priv, created, err = revoker.LoadOrCreateKeyFile(cfg.DataDir, EvidenceKeyFile); err != nil {
			return nil, fmt.Errorf("evidence %w", err)
		}
		if created {
			logger.Info("created an evidence signing key; set LEASEGUARD_EVIDENCE_SIGNING_KEY to share one across nodes", "dir", cfg.DataDir)
		}
	}
	return evidence.NewCheckpointSigner(priv)
}

// evidenceVerifyKeys are the public keys checkpoints are verified with:
// LEASEGUARD_EVIDENCE_VERIFY_KEYS and the signing key's own: configured,
// or with dataDir the file in DATA_DIR if it exists (never created here).
func evidenceVerifyKeys(cfg Config, dataDir bool) ([]ed25519.PublicKey, error) {
	pubs := slices.Clone(cfg.parsed().evidenceVerifyKeys)
	priv := cfg.parsed().evidenceKey
	var err error
	switch {
	case priv != nil:
	case !dataDir:
		return pubs, nil
	default:
		priv, err = revoker.ReadKeyFile(filepath.Join(cfg.DataDir, EvidenceKeyFile))
		if errors.Is(err, fs.ErrNotExist) {
			return pubs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("evidence %w", err)
		}
	}
	return append(pubs, priv.Public().(ed25519.PublicKey)), nil
}
