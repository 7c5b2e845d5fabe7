package observer

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/target/engine"
	"github.com/leaseguard/leaseguard/target/mysql"
)

// fakeMySQL is a MySQL target's read, as given.
type fakeMySQL mysql.Observation

func (f fakeMySQL) Observe(context.Context) (mysql.Observation, error) {
	return mysql.Observation(f), nil
}

// collidingNames finds two names of one key (a 32-bit key: a few tens of
// thousands of names do).
func collidingNames(t *testing.T) (string, string) {
	t.Helper()
	seen := map[uint32]string{}
	for i := range 1 << 22 {
		n := "v-c-" + strconv.Itoa(i)
		k := mysql.AccountKey(n)
		if other, ok := seen[k]; ok {
			return other, n
		}
		seen[k] = n
	}
	t.Fatal("no two names of one key")
	return "", ""
}

// TestReadMySQLRefusesSharedKeys: two names of one key would make a
// ghost of one look like a session of the other: the read fails, naming
// them, whether both are accounts or one is a session's user.
func TestReadMySQLRefusesSharedKeys(t *testing.T) {
	t.Parallel()
	a, b := collidingNames(t)
	start := time.Unix(1_700_000_000, 0).UTC()
	for what, obs := range map[string]mysql.Observation{
		"two accounts": {ServerStart: start, Accounts: []engine.Account{{Name: a}, {Name: b}}},
		"a ghost's user and an account": {ServerStart: start, Accounts: []engine.Account{{Name: a}},
			Sessions: []mysql.ObservedSession{{ID: 7, User: b}}},
	} {
		_, _, err := readMySQL(context.Background(), fakeMySQL(obs))
		if err == nil || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
			t.Errorf("%s: %v", what, err)
		}
	}
}

// TestReadMySQLMapping: the session key is (connection id, server start);
// an id past a pid's range is hidden, never cut.
func TestReadMySQLMapping(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_700_000_000, 0).UTC()
	ss, rs, err := readMySQL(context.Background(), fakeMySQL{ServerStart: start,
		Accounts: []engine.Account{{Name: "v-a", CanLogin: true}},
		Sessions: []mysql.ObservedSession{{ID: 42, User: "v-a", Addr: "10.0.0.5", Port: 5000, DB: "app"},
			{ID: math.MaxInt32 + 1, User: "v-a"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Name != "v-a" || rs[0].OID == 0 {
		t.Fatalf("roles = %+v", rs)
	}
	if len(ss) != 2 || ss[0].PID != 42 || !ss[0].BackendStart.Equal(start) || ss[0].UserOID != rs[0].OID ||
		ss[0].ClientAddr != "10.0.0.5" || ss[0].ClientPort != 5000 || ss[0].Datname != "app" || ss[0].BackendType != "client backend" {
		t.Fatalf("session = %+v", ss[0])
	}
	if ss[1].PID != 0 || !ss[1].BackendStart.IsZero() {
		t.Fatalf("an id past int32 = %+v; want hidden", ss[1])
	}
}
