package ingest

import (
	"context"
	"net"
)

// SetBeforeAck installs a hook that runs after a batch is committed and
// before it is acknowledged; an error simulates a crash at that point.
func (s *NATSSource) SetBeforeAck(f func() error) { s.beforeAck = f }

// SetBeforeCommit installs a hook that runs after a batch's ledger
// transaction and before its dead letters and offset commit; an error makes
// Run return it, as a crash at that point would.
func (s *KafkaSource) SetBeforeCommit(f func() error) { s.beforeCommit = f }

// InFlight is the number of records fetched from the brokers and not yet
// finished: held by the source or buffered by the reader.
func (s *KafkaSource) InFlight() int {
	n := int(s.held.Load())
	if r := s.reader.Load(); r != nil {
		n += int(r.Stats().QueueLength)
	}
	return n
}

// SetDial makes the source open every broker connection with dial.
func (s *KafkaSource) SetDial(dial func(ctx context.Context, network, address string) (net.Conn, error)) {
	s.dial = dial
}
