package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/leaseguard/leaseguard/schemas"
)

// kafkaRecord is one fetched record and the messages it carries.
type kafkaRecord struct {
	msg   kafka.Message
	lease bool
	// entries are the audit entries of the record (its value, unwrapped
	// from the shipper's envelope, split at newlines), or the one
	// LeaseEvent document of a lease topic record.
	entries [][]byte
	// reject says why the record as a whole cannot be read (its envelope);
	// it then has no entries and is dead-lettered as is.
	reject string
}

type kafkaRecordID struct {
	topicPartition
	offset int64
}

func (r *kafkaRecord) tp() topicPartition {
	return topicPartition{topic: r.msg.Topic, partition: r.msg.Partition}
}

func (r *kafkaRecord) id() kafkaRecordID {
	return kafkaRecordID{topicPartition: r.tp(), offset: r.msg.Offset}
}

// size is the number of messages the record gives the processor (a
// rejected record counts as one).
func (r *kafkaRecord) size() int { return max(len(r.entries), 1) }

func (r *kafkaRecord) sourceRef() schemas.SourceRef {
	return schemas.SourceRef{Transport: "kafka", Stream: r.msg.Topic, Partition: r.msg.Partition, Offset: r.msg.Offset}
}

// deadLetter is the dead-letter record of d: the original record value,
// or, for one entry of a record that carries several, that entry's bytes
// with its position in HeaderSourceEntry, secrets redacted from value and
// reason. The key is the original's.
func (r *kafkaRecord) deadLetter(d deadEntry) kafka.Message {
	value := r.msg.Value
	if d.entry >= 0 && len(r.entries) > 1 {
		value = r.entries[d.entry]
	}
	value, reason := redactDeadLetter(value, d.reason)
	headers := []kafka.Header{
		{Key: HeaderReason, Value: []byte(reason)},
		{Key: HeaderSourceTopic, Value: []byte(r.msg.Topic)},
		{Key: HeaderSourcePartition, Value: formatInt(int64(r.msg.Partition))},
		{Key: HeaderSourceOffset, Value: formatInt(r.msg.Offset)},
	}
	if d.entry >= 0 && len(r.entries) > 1 {
		headers = append(headers, kafka.Header{Key: HeaderSourceEntry, Value: []byte(strconv.Itoa(d.entry + 1))})
	}
	return kafka.Message{Key: r.msg.Key, Value: value, Headers: headers}
}

// parseRecord reads a record's messages: a lease topic record is one
// LeaseEvent document; an audit record's value is unwrapped from the
// shipper's envelope (EnvelopeField) and split into newline-separated
// entries (a Vault audit entry is one line of JSON).
func (s *KafkaSource) parseRecord(m kafka.Message) *kafkaRecord {
	rec := &kafkaRecord{msg: m, lease: s.cfg.LeaseTopic != "" && m.Topic == s.cfg.LeaseTopic}
	if rec.lease {
		rec.entries = [][]byte{m.Value}
		return rec
	}
	payload := m.Value
	if s.cfg.EnvelopeField != "" {
		p, reason := unwrapEnvelope(payload, s.cfg.EnvelopeField)
		if reason != "" {
			rec.reject = reason
			return rec
		}
		payload = p
	}
	rec.entries = splitEntries(payload)
	return rec
}

// unwrapEnvelope returns the entry under field of a JSON envelope, or a
// dead-letter reason.
func unwrapEnvelope(value []byte, field string) ([]byte, string) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(value, &env); err != nil {
		r := jsonErrorReason(err, "shipper envelope", "time")
		if !strings.HasPrefix(r, "shipper envelope") {
			r = "shipper envelope: " + r
		}
		return nil, r
	}
	if env == nil {
		return nil, "shipper envelope: not a JSON object: got null"
	}
	raw, ok := env[field]
	if !ok {
		return nil, fmt.Sprintf("shipper envelope has no %q field", field)
	}
	switch raw[0] {
	case '"':
		var line string
		if err := json.Unmarshal(raw, &line); err != nil {
			return nil, fmt.Sprintf("shipper envelope field %q: %v", field, err)
		}
		return []byte(line), ""
	case '{':
		return raw, ""
	}
	return nil, fmt.Sprintf("shipper envelope field %q is %s, want a string or an object", field, jsonValueKind(raw))
}

func jsonValueKind(raw json.RawMessage) string {
	switch raw[0] {
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// splitEntries splits a record value into its non-blank lines. A value
// without any is one (empty) entry, which the decoder rejects.
func splitEntries(v []byte) [][]byte {
	var out [][]byte
	for len(v) > 0 {
		line := v
		if i := bytes.IndexByte(v, '\n'); i >= 0 {
			line, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return [][]byte{nil}
	}
	return out
}
