package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"

	"github.com/leaseguard/leaseguard/revoker"
)

// keysCmd prints the command signing key's id and public key (what other
// processes put in LEASEGUARD_COMMAND_VERIFY_KEYS), or, with --generate, a
// new key for a rotation: its seed on stdout (for a 0600 file), its id and
// public key on stderr.
func keysCmd(_ context.Context, m *Main, args []string) error {
	fs := m.flags("keys", "[--generate]")
	generate := fs.Bool("generate", false, "print a new signing key (seed on stdout, public key on stderr)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *generate {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, base64.StdEncoding.EncodeToString(priv.Seed()))
		printKey(m.Stderr, pub)
		return nil
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	signer, verifier, err := commandKeys(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, "signing key:")
	printKey(m.Stdout, signer.PublicKey())
	fmt.Fprintln(m.Stdout, "accepted keys (the signing key's and LEASEGUARD_COMMAND_VERIFY_KEYS):")
	for _, id := range verifier.KeyIDs() {
		fmt.Fprintf(m.Stdout, "  key id %s\n", id)
	}
	return nil
}

func printKey(w io.Writer, pub ed25519.PublicKey) {
	fmt.Fprintf(w, "  key id     %s\n  public key %s\n", revoker.KeyID(pub), base64.StdEncoding.EncodeToString(pub))
}
