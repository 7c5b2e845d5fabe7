package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "leaseguard_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Inc()
	s, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var dbErr error
	s.AddCheck("database", func(context.Context) error { return dbErr })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "leaseguard_test_total 1") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "database: ok") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	dbErr = errors.New("down")
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "database: down") {
		t.Errorf("/readyz not ready = %d %q", code, body)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal("second shutdown:", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{Addr: "nope", Gatherer: prometheus.NewRegistry()}); err == nil {
		t.Error("bad address accepted")
	}
}
