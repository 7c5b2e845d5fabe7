package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartCluster runs n JetStream servers in one cluster on loopback, with
// no authentication (tests only), and returns their client URLs joined by
// commas, as LEASEGUARD_NATS_URL takes them. It waits until JetStream has a
// meta leader, so streams with n replicas can be created at once.
func StartCluster(t testing.TB, n int) string {
	t.Helper()
	urls, _ := StartClusterServers(t, n)
	return urls
}

// StartClusterServers is StartCluster that also returns the servers, for
// a test that stops one of them.
func StartClusterServers(t testing.TB, n int) (string, []*server.Server) {
	t.Helper()
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
	var routes []*url.URL
	for _, p := range routePorts {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var urls []string
	var servers []*server.Server
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("lg-test-%d", i), Host: "127.0.0.1", Port: clientPorts[i],
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "lg-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  routes,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats cluster server %d: %v", i, err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	waitClusterReady(t, servers)
	return strings.Join(urls, ","), servers
}

func waitClusterReady(t testing.TB, servers []*server.Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !clusterReady(servers) {
		if time.Now().After(deadline) {
			t.Fatal("nats cluster: no JetStream meta leader with every peer current within 30s")
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
}

// clusterReady: every server takes connections and is current with the
// meta group, and its leader sees every other server online and current,
// so a stream can be placed on all of them.
func clusterReady(servers []*server.Server) bool {
	var leader *server.Server
	for _, s := range servers {
		if !s.ReadyForConnections(10*time.Millisecond) || !s.JetStreamIsCurrent() {
			return false
		}
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil {
		return false
	}
	info, err := leader.Jsz(nil)
	if err != nil || info.Meta == nil || len(info.Meta.Replicas) != len(servers)-1 {
		return false
	}
	for _, p := range info.Meta.Replicas {
		if p.Offline || !p.Current {
			return false
		}
	}
	return true
}

// freePorts reserves n loopback ports by listening and closing; a server
// started right after gets them.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
