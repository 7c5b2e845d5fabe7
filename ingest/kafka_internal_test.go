package ingest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func rec(topic string, partition int, offset int64) *kafkaRecord {
	return &kafkaRecord{msg: kafka.Message{Topic: topic, Partition: partition, Offset: offset}, entries: [][]byte{nil}}
}

func ids(recs []*kafkaRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s/%d@%d", r.msg.Topic, r.msg.Partition, r.msg.Offset))
	}
	return out
}

func TestCommitPlan(t *testing.T) {
	t.Parallel()
	a0, a1 := topicPartition{"a", 0}, topicPartition{"a", 1}
	cases := []struct {
		name string
		// batch in fetch order; ok says which records are finished on
		// their own (before ordering is applied).
		batch []*kafkaRecord
		ok    []bool
		next  map[topicPartition]int64
		kept  []string
	}{
		{
			name:  "all finished",
			batch: []*kafkaRecord{rec("a", 0, 5), rec("a", 1, 0), rec("a", 0, 6)},
			ok:    []bool{true, true, true},
			next:  map[topicPartition]int64{a0: 7, a1: 1},
		},
		{
			name:  "a failure holds back the rest of its partition only",
			batch: []*kafkaRecord{rec("a", 0, 5), rec("a", 1, 0), rec("a", 0, 6), rec("a", 0, 7), rec("a", 1, 1)},
			ok:    []bool{true, true, false, true, true},
			next:  map[topicPartition]int64{a0: 6, a1: 2},
			kept:  []string{"a/0@6", "a/0@7"},
		},
		{
			name:  "first record fails: nothing to commit there",
			batch: []*kafkaRecord{rec("a", 0, 5), rec("a", 0, 6)},
			ok:    []bool{false, true},
			next:  map[topicPartition]int64{},
			kept:  []string{"a/0@5", "a/0@6"},
		},
		{
			// After a rebalance the reader starts again at the committed
			// offset (3) while the source still holds 5..6 from before.
			name:  "redelivered lower offsets after kept ones",
			batch: []*kafkaRecord{rec("a", 0, 5), rec("a", 0, 6), rec("a", 0, 3), rec("a", 0, 4)},
			ok:    []bool{true, true, false, true},
			next:  map[topicPartition]int64{a0: 3},
			kept:  []string{"a/0@3", "a/0@4"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done := finishedInOrder(c.batch, func(i int) bool { return c.ok[i] })
			next, kept := commitPlan(c.batch, done)
			if fmt.Sprint(next) != fmt.Sprint(c.next) {
				t.Errorf("next = %v, want %v", next, c.next)
			}
			if got := ids(kept); !slices.Equal(got, c.kept) {
				t.Errorf("kept = %v, want %v", got, c.kept)
			}
			// Never past a kept record.
			for _, k := range kept {
				if n, ok := next[k.tp()]; ok && n > k.msg.Offset {
					t.Errorf("commit %d passes kept %v", n, ids([]*kafkaRecord{k}))
				}
			}
		})
	}
}

func TestSplitEntries(t *testing.T) {
	t.Parallel()
	cases := map[string][]string{
		`{"a":1}`:                     {`{"a":1}`},
		"{\"a\":1}\n":                 {`{"a":1}`},
		"{\"a\":1}\r\n\n {\"b\":2}\n": {`{"a":1}`, `{"b":2}`},
		"":                            {""},
		"\n \n":                       {""},
	}
	for in, want := range cases {
		var got []string
		for _, e := range splitEntries([]byte(in)) {
			got = append(got, string(e))
		}
		if !slices.Equal(got, want) {
			t.Errorf("splitEntries(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnwrapEnvelope(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, entry, reason string
	}{
		{`{"message":"{\"type\":\"request\"}","host":"v"}`, `{"type":"request"}`, ""},
		{`{"log":{"type":"request"}}`, "", `shipper envelope has no "message" field`},
		{`{"message":{"type":"request"}}`, `{"type":"request"}`, ""},
		{`{"message":["x"]}`, "", `shipper envelope field "message" is an array, want a string or an object`},
		{`{"message":null}`, "", `shipper envelope field "message" is null, want a string or an object`},
		{`{"message":true}`, "", `shipper envelope field "message" is a boolean, want a string or an object`},
		{`null`, "", "shipper envelope: not a JSON object: got null"},
		{`"just a string"`, "", "shipper envelope: not a JSON object: got string"},
		{`{"message":"cut`, "", "shipper envelope looks truncated (unexpected end of JSON input)"},
		{`<13>Nov 25 vault: {}`, "", "shipper envelope: not JSON: invalid character '<' looking for beginning of value"},
	}
	for _, c := range cases {
		entry, reason := unwrapEnvelope([]byte(c.in), "message")
		if string(entry) != c.entry || reason != c.reason {
			t.Errorf("unwrapEnvelope(%s) = %q, %q; want %q, %q", c.in, entry, reason, c.entry, c.reason)
		}
		if reason != "" && strings.Contains(reason, "envelope: envelope") {
			t.Errorf("reason %q repeats itself", reason)
		}
	}
}

// The session timeout reaches the group client, with heartbeats often
// enough that a few lost ones do not end the session; the default is not
// the client's 30 s.
func TestKafkaSessionTimeoutReachesTheReader(t *testing.T) {
	t.Parallel()
	cases := []struct {
		session, wantSession, wantHeartbeat time.Duration
	}{
		{0, 10 * time.Second, 2 * time.Second},
		{6 * time.Second, 6 * time.Second, 1200 * time.Millisecond},
		{time.Minute, time.Minute, 3 * time.Second},
	}
	for _, c := range cases {
		cfg := DefaultKafkaConfig()
		cfg.Brokers = []string{"127.0.0.1:9092"}
		cfg.SessionTimeout = c.session
		s, err := NewKafkaSource(cfg, &Processor{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		rc := s.readerConfig()
		if rc.SessionTimeout != c.wantSession || rc.HeartbeatInterval != c.wantHeartbeat {
			t.Errorf("session %s: reader has session %s, heartbeat %s; want %s, %s", c.session, rc.SessionTimeout, rc.HeartbeatInterval,
				c.wantSession, c.wantHeartbeat)
		}
	}
	for _, bad := range []time.Duration{-time.Second, 500 * time.Millisecond, 31 * time.Minute} {
		cfg := DefaultKafkaConfig()
		cfg.Brokers = []string{"127.0.0.1:9092"}
		cfg.SessionTimeout = bad
		if err := cfg.Validate(); err == nil {
			t.Errorf("session timeout %s accepted", bad)
		}
	}
}
