package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A /metrics page that never answers ends a scrape with an error after
// scrapeTimeout, not when the case's own context ends: the kafka case polls
// the second process's page while it waits for the group to spread.
func TestScrapeOfASilentPageEnds(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := scrapeSum(ctx, srv.URL+"/metrics", "leaseguard_ingest_entries_total", ""); err == nil {
		t.Fatal("a page that never answered was read without an error")
	}
	if took := time.Since(start); took > scrapeTimeout+5*time.Second {
		t.Errorf("the scrape took %s, past its bound of %s", took, scrapeTimeout)
	}
}
