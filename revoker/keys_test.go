package revoker

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestParsePrivateKey(t *testing.T) {
	t.Parallel()
	priv := testKey(t, 7)
	seed := base64.StdEncoding.EncodeToString(priv.Seed())
	full := base64.StdEncoding.EncodeToString(priv)
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte(seed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mismatched := append(append([]byte{}, priv.Seed()...), testKey(t, 8).Public().(ed25519.PublicKey)...)

	for _, in := range []string{seed, full, " " + seed + "\n", "file:" + file} {
		got, err := ParsePrivateKey(in)
		if err != nil || !got.Equal(priv) {
			t.Errorf("ParsePrivateKey(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{
		"",
		"not base64",
		base64.StdEncoding.EncodeToString([]byte("short")),
		base64.StdEncoding.EncodeToString(mismatched),
		"file:" + filepath.Join(t.TempDir(), "missing"),
	} {
		if _, err := ParsePrivateKey(in); err == nil {
			t.Errorf("ParsePrivateKey(%q) succeeded", in)
		}
	}
}

func TestParsePublicKeys(t *testing.T) {
	t.Parallel()
	a, b := testKey(t, 1).Public().(ed25519.PublicKey), testKey(t, 2).Public().(ed25519.PublicKey)
	enc := base64.StdEncoding.EncodeToString
	keys, err := ParsePublicKeys(" " + enc(a) + " ,," + enc(b) + ",")
	if err != nil || len(keys) != 2 || !keys[0].Equal(a) || !keys[1].Equal(b) {
		t.Fatalf("ParsePublicKeys = %v, %v", keys, err)
	}
	if keys, err := ParsePublicKeys(""); err != nil || len(keys) != 0 {
		t.Errorf("empty: %v, %v", keys, err)
	}
	for _, in := range []string{enc(a) + ",nope", enc(a[:31]), enc(testKey(t, 1))} {
		if _, err := ParsePublicKeys(in); err == nil {
			t.Errorf("ParsePublicKeys(%q) succeeded", in)
		}
	}
}

func TestLoadOrCreateKeyPair(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	priv, created, err := LoadOrCreateKeyPair(dir)
	if err != nil || !created || len(priv) != ed25519.PrivateKeySize {
		t.Fatalf("first start: %v, %v", created, err)
	}
	path := filepath.Join(dir, SigningKeyFile)
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", info, err)
	}
	again, created, err := LoadOrCreateKeyPair(dir)
	if err != nil || created || !again.Equal(priv) {
		t.Fatalf("second start: created %v, same %v, %v", created, again.Equal(priv), err)
	}
	fromEnv, err := ParsePrivateKey("file:" + path)
	if err != nil || !fromEnv.Equal(priv) {
		t.Errorf("file: form of the key file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only the key", len(entries))
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKeyPair(dir); err == nil {
		t.Error("a world-readable key file was accepted")
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKeyPair(dir); err == nil {
		t.Error("a corrupt key file was accepted")
	}
}

func TestLoadOrCreateKeyPairRace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 16
	keys := make([]ed25519.PrivateKey, n)
	created := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], created[i], errs[i] = LoadOrCreateKeyPair(dir) })
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if !keys[i].Equal(keys[0]) {
			t.Fatalf("racer %d got another key", i)
		}
		if created[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Errorf("%d racers report creating the key, want 1", creators)
	}
	onDisk, err := ParsePrivateKey("file:" + filepath.Join(dir, SigningKeyFile))
	if err != nil || !onDisk.Equal(keys[0]) {
		t.Errorf("file holds another key: %v", err)
	}
}
