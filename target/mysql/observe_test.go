package mysql

import (
	"testing"
)

func TestSplitHost(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		addr string
		port int32
	}{
		{"10.0.0.5:51234", "10.0.0.5", 51234},
		{"::1:51234", "::1", 51234},
		{"[::1]:51234", "::1", 51234},
		{"2001:db8::7:3306", "2001:db8::7", 3306},
		{"[2001:db8::7]:3306", "2001:db8::7", 3306},
		{"::ffff:10.1.2.3:40000", "::ffff:10.1.2.3", 40000},
		{"localhost", "", 0},
		{"", "", 0},
		{"localhost:40000", "localhost", 40000},
		{"app.example.com:5000", "app.example.com", 5000},
		{"10.0.0.5", "10.0.0.5", 0},
		{"fe80::1", "fe80::1", 0},
	} {
		addr, port := SplitHost(c.in)
		if addr != c.addr || port != c.port {
			t.Errorf("SplitHost(%q) = %q, %d; want %q, %d", c.in, addr, port, c.addr, c.port)
		}
	}
}

// TestObserveSessionsAndAccounts: the read names a client's connection by
// its id, user and address, with the server's start (the same on every
// read), groups the hosts of a name, and leaves out the reader's own
// connection.
func TestObserveSessionsAndAccounts(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	name := r.name("obs")
	r.createUser(name, "pw-obs", "%", "127.0.0.1")
	c := r.connectAs(name, "pw-obs")
	var id int64
	if err := c.QueryRowContext(r.ctx(), `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	first, err := r.e.Observe(r.ctx())
	if err != nil {
		t.Fatal(err)
	}
	second, err := r.e.Observe(r.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if first.ServerStart.IsZero() || !first.ServerStart.Equal(second.ServerStart) {
		t.Fatalf("server start %v then %v: want one start", first.ServerStart, second.ServerStart)
	}
	var uptime int64
	if err := r.root.QueryRowContext(r.ctx(), `SELECT UNIX_TIMESTAMP() - CAST(VARIABLE_VALUE AS SIGNED) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'`).Scan(&uptime); err != nil {
		t.Fatal(err)
	}
	if first.ServerStart.Unix() != uptime {
		t.Errorf("server start %d, root reads %d", first.ServerStart.Unix(), uptime)
	}
	var mine []ObservedSession
	for _, s := range first.Sessions {
		if s.User == name {
			mine = append(mine, s)
		}
		if s.User == "system user" || s.User == "event_scheduler" || s.User == "" {
			t.Errorf("a server thread was read: %+v", s)
		}
	}
	if len(mine) != 1 || mine[0].ID != id || mine[0].Addr != "127.0.0.1" || mine[0].Port <= 0 {
		t.Fatalf("sessions of %s = %+v; want connection %d from 127.0.0.1", name, mine, id)
	}
	var hosts []string
	for _, a := range first.Accounts {
		if a.Name == name {
			hosts = a.Hosts
		}
	}
	if len(hosts) != 2 {
		t.Fatalf("hosts of %s = %v", name, hosts)
	}
}

// TestAccountKey: stable, and different for different names.
func TestAccountKey(t *testing.T) {
	t.Parallel()
	a, b := AccountKey("v-app-1"), AccountKey("v-app-2")
	if a == 0 || a != AccountKey("v-app-1") || a == b {
		t.Fatalf("keys %d, %d", a, b)
	}
}
