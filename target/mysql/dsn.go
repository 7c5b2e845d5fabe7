package mysql

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"
)

// Scheme prefixes a MySQL or MariaDB target URL.
const Scheme = "mysql://"

// Connection deadlines of every target connection: connecting, and each
// read and write on the wire (a silent server fails the statement instead
// of holding it).
const (
	dialTimeout = 5 * time.Second
	ioTimeout   = 30 * time.Second
	// lockWaitTimeout (seconds) is the server's lock_wait_timeout of every
	// session: well under ioTimeout and the drop's own deadline.
	lockWaitTimeout = 10
)

// IsURL reports whether s is a mysql:// URL.
func IsURL(s string) bool { return strings.HasPrefix(strings.ToLower(s), Scheme) }

// ParseURL turns mysql://user:pass@host:port/[db][?tls=…] into the driver's
// configuration. Only tls is accepted as a parameter (true, false,
// skip-verify, preferred); the port defaults to 3306. Errors never repeat
// the URL: it holds a password.
func ParseURL(s string) (*driver.Config, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "mysql" || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("want mysql://user:password@host:port/")
	}
	if u.User == nil || u.User.Username() == "" {
		return nil, errors.New("no user name")
	}
	cfg := driver.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = strings.Trim(u.Path, "/")
	if strings.Contains(cfg.DBName, "/") {
		return nil, errors.New("path is more than a database name")
	}
	for k, v := range u.Query() {
		if k != "tls" || len(v) != 1 {
			return nil, fmt.Errorf("parameter %q: only tls=true|false|skip-verify|preferred is accepted", k)
		}
		switch v[0] {
		case "true", "false", "skip-verify", "preferred":
			cfg.TLSConfig = v[0]
		default:
			return nil, fmt.Errorf("tls=%q: want true, false, skip-verify or preferred", v[0])
		}
	}
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	// Account names cannot be bound as server-side parameters (CREATE,
	// ALTER and DROP USER take literals): the driver interpolates every
	// argument itself, escaped for the connection's character set and
	// SQL mode, so no statement is ever built by concatenating a name.
	cfg.InterpolateParams = true
	// A statement waiting on a lock ends on the server too: the driver's
	// deadlines only close the client's side, and a DROP USER left waiting
	// would hold the account's revocation lock long after.
	cfg.Params = map[string]string{"lock_wait_timeout": strconv.Itoa(lockWaitTimeout)}
	return cfg, nil
}
