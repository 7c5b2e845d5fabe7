package bus

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// MinServerVersion is the oldest nats-server leaseguard works with: the
// ingest consumer filters on several subjects, which 2.10 introduced.
const MinServerVersion = "2.10.0"

// CheckServer refuses a connection to a nats-server older than
// MinServerVersion, saying which version is needed. An older server
// otherwise answers the consumer request with "multiple consumer filter
// subjects not supported", which names neither. It says nothing while not
// yet connected: the version is unknown until then.
func CheckServer(nc *nats.Conn) error {
	v := nc.ConnectedServerVersion()
	if v == "" || !older(v, MinServerVersion) {
		return nil
	}
	return fmt.Errorf("the NATS server at %s is version %s; leaseguard needs nats-server %s or later (JetStream consumers with several filter subjects)",
		nc.ConnectedUrlRedacted(), v, MinServerVersion)
}

// older reports whether version a is older than b, both "major.minor.patch"
// with an optional "-suffix".
func older(a, b string) bool {
	pa, pb := parts(a), parts(b)
	for i := range pa {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func parts(v string) [3]int {
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	var out [3]int
	for i, s := range strings.SplitN(v, ".", 3) {
		out[i], _ = strconv.Atoi(s)
	}
	return out
}
