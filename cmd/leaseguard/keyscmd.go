package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/leaseguard/leaseguard/evidence"
	"github.com/leaseguard/leaseguard/revoker"
)

// keysOptions are keys' flags.
type keysOptions struct {
	generate bool
	output   outputFormat
}

// keysCommand prints the command signing key's id and public key (what
// other processes put in LEASEGUARD_COMMAND_VERIFY_KEYS) and the evidence
// signing key's (what a SIEM verifies checkpoints with), or, with
// --generate, a new key for a rotation: its seed on stdout (for a 0600
// file), its id and public key on stderr.
func (m *Main) keysCommand() *cobra.Command {
	var o keysOptions
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "show the command and evidence signing keys' ids and public keys; --generate makes a new key (rotation)",
		Long: "Keys shows the command signing key's id and public key and the key ids the revoker accepts\n" +
			"(the signing key's and LEASEGUARD_COMMAND_VERIFY_KEYS), and the evidence signing key's id and\n" +
			"public key, which verifies the signed checkpoints of the evidence chain (give it to a SIEM as\n" +
			"evidence verify --evidence-key), with the evidence key ids verify accepts. With --generate it\n" +
			"prints a new key for a rotation of either: its seed alone on stdout (keep it 0600), its id and\n" +
			"public key on stderr.",
		Example: "  leaseguard keys -o json\n  leaseguard keys --generate > /etc/leaseguard/command-signing.key.new",
		Args:    noArgs,
		RunE:    func(*cobra.Command, []string) error { return keysCmd(m, o) },
	}
	cmd.Flags().BoolVar(&o.generate, "generate", false, "print a new signing key (seed on stdout, public key on stderr)")
	outputFlag(cmd, &o.output, "table, or json: {signing_key: {key_id, public_key}, accepted_key_ids, evidence_key: {key_id, public_key}, accepted_evidence_key_ids}")
	return cmd
}

// keysView is what keys -o json prints.
type keysView struct {
	SigningKey     keyView  `json:"signing_key"`
	AcceptedKeyIDs []string `json:"accepted_key_ids"`
	// EvidenceKey signs the evidence checkpoints.
	EvidenceKey            keyView  `json:"evidence_key"`
	AcceptedEvidenceKeyIDs []string `json:"accepted_evidence_key_ids"`
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
	evidenceKey, err := evidenceSigner(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	accepted, err := evidenceVerifyKeys(cfg, true)
	if err != nil {
		return err
	}
	v := keysView{SigningKey: viewKey(signer.PublicKey()), AcceptedKeyIDs: verifier.KeyIDs(),
		EvidenceKey: viewKey(evidenceKey.PublicKey())}
	for _, k := range accepted {
		v.AcceptedEvidenceKeyIDs = append(v.AcceptedEvidenceKeyIDs, evidence.EvidenceKeyID(k))
	}
	if o.output == outputJSON {
		return writeJSON(m.Stdout, v)
	}
	printKeys(m.Stdout, v)
	return nil
}

func printKeys(w io.Writer, v keysView) {
	fmt.Fprintln(w, "signing key:")
	fmt.Fprintf(w, "  key id     %s\n  public key %s\n", v.SigningKey.KeyID, v.SigningKey.PublicKey)
	fmt.Fprintln(w, "accepted keys (the signing key's and LEASEGUARD_COMMAND_VERIFY_KEYS):")
	for _, id := range v.AcceptedKeyIDs {
		fmt.Fprintf(w, "  key id %s\n", id)
	}
	fmt.Fprintln(w, "evidence signing key (verifies the evidence checkpoints):")
	fmt.Fprintf(w, "  key id     %s\n  public key %s\n", v.EvidenceKey.KeyID, v.EvidenceKey.PublicKey)
	fmt.Fprintln(w, "accepted evidence keys (the evidence signing key's and LEASEGUARD_EVIDENCE_VERIFY_KEYS):")
	for _, id := range v.AcceptedEvidenceKeyIDs {
		fmt.Fprintf(w, "  key id %s\n", id)
	}
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
