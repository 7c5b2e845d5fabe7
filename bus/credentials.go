package bus

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/leaseguard/leaseguard/internal/privfile"
)

// The users of the embedded server. Each has its own account (see
// access.go); leaseguard's owns the streams.
const (
	UserLeaseguard = "leaseguard"
	UserShipper    = "shipper"
	UserSIEM       = "siem"
)

// seedSuffix names a user's seed file: <dir>/<user>.nk, the format of the
// `nk` tool and of `nats --nkey`.
const seedSuffix = ".nk"

// Credential is one user's nkey: the seed file the user's client reads and
// the public key the server checks signatures against. The public key is no
// secret; the seed is, and only its path is ever logged.
type Credential struct {
	User      string
	SeedFile  string
	PublicKey string
}

// Option is the nats.go connect option that authenticates as c.
func (c Credential) Option() (nats.Option, error) {
	o, err := nats.NkeyOptionFromSeed(c.SeedFile)
	if err != nil {
		return nil, fmt.Errorf("nkey of %s: %w", c.User, err)
	}
	return o, nil
}

// Credentials are the nkeys of the embedded server's users, kept in Dir.
type Credentials struct {
	Dir   string
	users map[string]Credential
}

// User returns the credential of user, if it was loaded.
func (c *Credentials) User(user string) (Credential, bool) {
	if c == nil {
		return Credential{}, false
	}
	cr, ok := c.users[user]
	return cr, ok
}

// LoadOrCreateCredentials returns the nkeys of users kept in dir, creating
// each seed that does not exist yet (mode 0600, in a directory of mode
// 0700). Seeds are made once and reused, so a shipper configured with one
// keeps working across restarts. A directory or seed file that group or
// others can reach is refused: whoever reads a seed is that user.
func LoadOrCreateCredentials(dir string, users ...string) (*Credentials, error) {
	if err := ensurePrivateDir(dir); err != nil {
		return nil, err
	}
	c := &Credentials{Dir: dir, users: map[string]Credential{}}
	for _, u := range users {
		if u == "" || strings.ContainsAny(u, `/\. `) {
			return nil, fmt.Errorf("nats credentials: bad user name %q", u)
		}
		cr, err := loadOrCreateSeed(filepath.Join(dir, u+seedSuffix))
		if err != nil {
			return nil, err
		}
		cr.User = u
		c.users[u] = cr
	}
	return c, nil
}

// ensurePrivateDir creates dir with mode 0700, or checks that an existing
// one is not open to group or others.
func ensurePrivateDir(dir string) error {
	if err := privfile.EnsureDir(dir); err != nil {
		return fmt.Errorf("nats credentials directory: %w", err)
	}
	return nil
}

// loadOrCreateSeed reads the user seed at path, or creates it. The new
// seed is written under a temporary name and linked into place, which
// fails if the file exists: of processes racing, one wins and the others
// read its seed.
func loadOrCreateSeed(path string) (Credential, error) {
	if cr, err := readSeedFile(path); !errors.Is(err, fs.ErrNotExist) {
		return cr, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Credential{}, fmt.Errorf("generate nkey: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return Credential{}, fmt.Errorf("generate nkey: %w", err)
	}
	if _, err := privfile.CreateOnce(path, append(seed, '\n')); err != nil {
		return Credential{}, fmt.Errorf("nkey: %w", err)
	}
	return readSeedFile(path)
}

// readSeedFile reads and checks a user seed file: a regular file, mode
// 0600 or stricter, holding one user seed.
func readSeedFile(path string) (Credential, error) {
	b, err := privfile.Read(path)
	if err != nil {
		return Credential{}, fmt.Errorf("nkey: %w", err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		// The error names no part of the file: it holds a secret.
		return Credential{}, fmt.Errorf("nkey %s: not a NATS user seed", path)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return Credential{}, fmt.Errorf("nkey %s: %w", path, err)
	}
	return Credential{SeedFile: path, PublicKey: pub}, nil
}
