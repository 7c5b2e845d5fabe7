package ingest

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// UnixSocketPrefix marks AuditSocketConfig.Addr as a unix socket path
// ("unix:/run/leaseguard/audit.sock"), for Vault's socket_type=unix.
const UnixSocketPrefix = "unix:"

// DefaultSocketMode is the unix socket's file mode when none is given:
// owner and group (Vault's user in leaseguard's group, or the reverse) may
// connect, nobody else.
const DefaultSocketMode os.FileMode = 0o660

// maxUnixPath is the longest socket path every unix accepts (sun_path is
// 104 bytes on the BSDs and macOS, 108 on Linux, with its NUL).
const maxUnixPath = 103

// bindSuffix is what the private directory the socket is bound in adds to
// the socket's directory: "/.lg" + up to 10 random digits + "/s".
const bindSuffix = "/.lg0123456789/s"

// DefaultAllowedNets are the TCP peers accepted when none are configured:
// loopback only.
func DefaultAllowedNets() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// UnixPath is the socket path when Addr names a unix socket.
func (c AuditSocketConfig) UnixPath() (string, bool) {
	return strings.CutPrefix(c.Addr, UnixSocketPrefix)
}

func (c AuditSocketConfig) validateAddr() error {
	path, unix := c.UnixPath()
	if !unix {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("audit socket: address %q: %w", c.Addr, err)
		}
		return nil
	}
	switch {
	case !filepath.IsAbs(path):
		return fmt.Errorf("audit socket: unix socket path %q must be absolute", path)
	case len(path) > maxUnixPath || len(filepath.Dir(path))+len(bindSuffix) > maxUnixPath:
		return fmt.Errorf("audit socket: unix socket path %q is too long (at most %d bytes, its directory at most %d)",
			path, maxUnixPath, maxUnixPath-len(bindSuffix))
	}
	return nil
}

func (c AuditSocketConfig) validateAccess() error {
	if c.Mode&^os.ModePerm != 0 {
		return fmt.Errorf("audit socket: mode %#o has bits beyond the permission bits (0777)", uint32(c.Mode))
	}
	for _, p := range c.AllowedNets {
		if !p.IsValid() {
			return fmt.Errorf("audit socket: allowed network %q is not valid", p)
		}
	}
	return nil
}

// allowedNets is the allow-list with IPv4-mapped IPv6 prefixes written as
// IPv4, since peers are matched by their unmapped address.
func (c AuditSocketConfig) allowedNets() []netip.Prefix {
	if len(c.AllowedNets) == 0 {
		return DefaultAllowedNets()
	}
	out := make([]netip.Prefix, 0, len(c.AllowedNets))
	for _, p := range c.AllowedNets {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

func (c AuditSocketConfig) mode() os.FileMode {
	if c.Mode == 0 {
		return DefaultSocketMode
	}
	return c.Mode
}

// peerAllowed reports whether a TCP peer's address is in nets; unix
// socket peers always are (the file's mode decides who can connect).
func peerAllowed(conn net.Conn, nets []netip.Prefix) bool {
	ta, ok := conn.RemoteAddr().(*net.TCPAddr)
	if !ok {
		_, unix := conn.RemoteAddr().(*net.UnixAddr)
		return unix
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// listenUnix binds a unix socket at path with mode. It is bound in a
// private directory beside path, given its mode there and only then linked
// to path, so it is never reachable with the mode the umask would give it.
// A socket file nothing listens on (left by a crash) is removed first; one
// in use, or a file that is not a socket, is left alone and refused. It
// returns the listener and the socket file's identity, to remove it at
// shutdown only if it is still this one.
func listenUnix(path string, mode os.FileMode) (*net.UnixListener, os.FileInfo, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".lg")
	if err != nil {
		return nil, nil, fmt.Errorf("bind unix socket %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	bound := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("bind unix socket %s: %w", path, err)
	}
	// The bound name goes with the directory; path is removed by Run.
	ln.SetUnlinkOnClose(false)
	fi, err := publishSocket(bound, path, mode)
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	return ln, fi, nil
}

// publishSocket gives the bound socket its mode and links it to path;
// the link fails rather than replace a file that appeared meanwhile.
func publishSocket(bound, path string, mode os.FileMode) (os.FileInfo, error) {
	if err := os.Chmod(bound, mode); err != nil {
		return nil, fmt.Errorf("unix socket %s: set mode %#o: %w", path, uint32(mode), err)
	}
	if err := os.Link(bound, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("unix socket %s is in use: another process created it while leaseguard was binding", path)
		}
		return nil, fmt.Errorf("unix socket %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("unix socket %s: %w", path, err)
	}
	return fi, nil
}

// removeStaleSocket removes the socket file at path if nothing listens on
// it. Anything else at path is an error: leaseguard deletes no file it
// cannot tell is its own dead socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unix socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("unix socket %s: the file exists and is not a socket; leaving it alone", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("unix socket %s is in use: another process listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("unix socket %s: probe the existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unix socket %s: remove the stale socket: %w", path, err)
	}
	return nil
}

// removeSocketFile removes path at shutdown if it is still the socket
// bound (fi); a file another process put there since is left alone.
func removeSocketFile(path string, fi os.FileInfo) error {
	cur, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if !os.SameFile(cur, fi) {
		return nil
	}
	return os.Remove(path)
}
