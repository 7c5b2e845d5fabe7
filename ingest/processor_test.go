package ingest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// batchLog keeps every batch handed to the ledger.
type batchLog struct{ batches []store.Batch }

func (l *batchLog) Apply(_ context.Context, b store.Batch) (store.ApplyStats, error) {
	l.batches = append(l.batches, b)
	return store.ApplyStats{Events: len(b.Leases)}, nil
}

// A batch decoded on several goroutines gives exactly the results and the
// ledger batch of one decoded on one: same order, same dead letters.
func TestProcessParallelDecodeKeepsOrder(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/vault-1.21-audit.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fixture [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fixture = append(fixture, bytes.Clone(sc.Bytes()))
	}
	if len(fixture) < 20 {
		t.Fatalf("fixture has %d lines", len(fixture))
	}
	bad := [][]byte{
		[]byte(`{`),
		[]byte(`[]`),
		[]byte(`{"type":"response"}`),
		[]byte(strings.Repeat(" ", 10) + `{"type":"request","time":"2026-11-26T00:00:00Z","request":{"id":7}}`),
		bytes.Repeat([]byte("x"), DefaultMaxEntryBytes+1),
	}
	var msgs []Message
	for r := range 40 {
		for i, line := range fixture {
			msgs = append(msgs, Message{Data: line, Source: schemas.SourceRef{Transport: "nats", Subject: "vault.audit.t", Offset: int64(len(msgs))}})
			if (r*len(fixture)+i)%37 == 0 {
				msgs = append(msgs, Message{Data: bad[(r+i)%len(bad)], Source: schemas.SourceRef{Transport: "nats", Offset: int64(len(msgs))}})
			}
		}
		msgs = append(msgs, Message{Data: []byte(`{"kind":"lease.issued"`), LeaseEvent: true, Source: schemas.SourceRef{Transport: "nats", Offset: int64(len(msgs))}})
	}

	clock := func() time.Time { return time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC) }
	process := func(workers int) ([]Result, []store.Batch) {
		t.Helper()
		ledger := &batchLog{}
		p, err := NewProcessor(ProcessorConfig{Ledger: ledger, MaxEntryBytes: DefaultMaxEntryBytes, Clock: clock, DecodeWorkers: workers})
		if err != nil {
			t.Fatal(err)
		}
		results, err := p.Process(context.Background(), msgs)
		if err != nil {
			t.Fatal(err)
		}
		return results, ledger.batches
	}
	serial, serialBatches := process(1)
	dead := 0
	for _, r := range serial {
		if r.Disposition == DeadLetter {
			dead++
		}
	}
	if want := 40 + (40*len(fixture)+36)/37; dead != want {
		t.Fatalf("%d dead letters in the serial run, want %d", dead, want)
	}
	if len(serialBatches) != 1 || len(serialBatches[0].Leases) == 0 || len(serialBatches[0].Creds) == 0 {
		t.Fatalf("serial run: %d batches; want one with lease events and creds records", len(serialBatches))
	}
	for _, workers := range []int{2, 3, 8} {
		results, batches := process(workers)
		if !reflect.DeepEqual(results, serial) {
			for i := range results {
				if results[i] != serial[i] {
					t.Fatalf("%d workers: result %d = %+v, serial %+v", workers, i, results[i], serial[i])
				}
			}
			t.Fatalf("%d workers: %d results, serial %d", workers, len(results), len(serial))
		}
		if !reflect.DeepEqual(batches, serialBatches) {
			t.Fatalf("%d workers: the ledger batch differs from the serial run's", workers)
		}
	}
}

// An entry that carries a plaintext secret is read redacted: nothing the
// ledger keeps holds the secret, not even a forged field shaped like a
// token; the result says so, for the transport to erase the message.
func TestProcessReadsSecretsRedacted(t *testing.T) {
	t.Parallel()
	token := "hvs.CAESIProcessorSecretToken01"
	line := fixtureLine(t, 20)
	line = bytes.Replace(line, []byte(`"remote_address":"127.0.0.1"`), []byte(`"remote_address":"`+token+`"`), -1)
	line = bytes.Replace(line, []byte(`"display_name":"userpass-alice"`), []byte(`"display_name":"alice `+token+`"`), -1)
	if !bytes.Contains(line, []byte(token)) {
		t.Fatal("the fixture line was not poisoned")
	}
	ledger := &batchLog{}
	p, err := NewProcessor(ProcessorConfig{Ledger: ledger})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{
		{Data: line, Source: schemas.SourceRef{Transport: "nats"}},
		{Data: fixtureLine(t, 21), Source: schemas.SourceRef{Transport: "nats"}},
	}
	results, err := p.Process(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].PlaintextSecret || results[0].Disposition != Done || results[1].PlaintextSecret {
		t.Errorf("results = %+v", results)
	}
	var leases int
	for _, b := range ledger.batches {
		leases += len(b.Leases)
		if s := fmt.Sprintf("%+v", b); strings.Contains(s, token) || strings.Contains(s, "hvs.") {
			t.Errorf("the ledger batch holds the token: %s", s)
		}
	}
	if leases == 0 {
		t.Error("the entry did not reach the ledger")
	}
}
