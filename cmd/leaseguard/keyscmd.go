package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/revoker"
)

// keysOptions are keys' flags.
type keysOptions struct {
	generate bool
	output   outputFormat
}

// keysCommand prints the command signing key's id and public key (what
// other processes put in LEASEGUARD_COMMAND_VERIFY_KEYS), or, with
// --generate, a new key for a rotation: its seed on stdout (for a 0600
// file), its id and public key on stderr.
func (m *Main) keysCommand() *cobra.Command {
	var o keysOptions
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "show the command signing key's id and public key; --generate makes a new one (rotation)",
		Long: "Keys shows the command signing key's id and public key and the key ids the revoker accepts\n" +
			"(the signing key's and LEASEGUARD_COMMAND_VERIFY_KEYS). With --generate it prints a new key\n" +
			"for a rotation: its seed alone on stdout (keep it 0600), its id and public key on stderr.",
		Example: "  leaseguard keys -o json\n  leaseguard keys --generate > /etc/leaseguard/command-signing.key.new",
		Args:    noArgs,
		RunE:    func(*cobra.Command, []string) error { return keysCmd(m, o) },
	}
	cmd.Flags().BoolVar(&o.generate, "generate", false, "print a new signing key (seed on stdout, public key on stderr)")
	outputFlag(cmd, &o.output, "table, or json: {signing_key: {key_id, public_key}, accepted_key_ids}")
	return cmd
}

// keysView is what keys -o json prints.
type keysView struct {
	SigningKey     keyView  `json:"signing_key"`
	AcceptedKeyIDs []string `json:"accepted_key_ids"`
}

type keyView struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
}

func keysCmd(m *Main, o keysOptions) error {
	if o.generate {
		if o.output == outputJSON {
			return usageError{"--generate prints the seed alone on stdout: --output json is for showing the keys"}
		}
		return generateKey(m)
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	signer, verifier, err := commandKeys(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if o.output == outputJSON {
		return writeJSON(m.Stdout, keysView{SigningKey: viewKey(signer.PublicKey()), AcceptedKeyIDs: verifier.KeyIDs()})
	}
	fmt.Fprintln(m.Stdout, "signing key:")
	printKey(m.Stdout, signer.PublicKey())
	fmt.Fprintln(m.Stdout, "accepted keys (the signing key's and LEASEGUARD_COMMAND_VERIFY_KEYS):")
	for _, id := range verifier.KeyIDs() {
		fmt.Fprintf(m.Stdout, "  key id %s\n", id)
	}
	return nil
}

func generateKey(m *Main) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, base64.StdEncoding.EncodeToString(priv.Seed()))
	printKey(m.Stderr, pub)
	return nil
}

func viewKey(pub ed25519.PublicKey) keyView {
	return keyView{KeyID: revoker.KeyID(pub), PublicKey: base64.StdEncoding.EncodeToString(pub)}
}

func printKey(w io.Writer, pub ed25519.PublicKey) {
	k := viewKey(pub)
	fmt.Fprintf(w, "  key id     %s\n  public key %s\n", k.KeyID, k.PublicKey)
}
