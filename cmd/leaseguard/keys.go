package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"

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
