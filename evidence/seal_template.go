package evidence

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"

	"github.com/leaseguard/leaseguard/schemas"
)

// sealCut is an event encoded twice with its seal cut out: the canonical
// form that is hashed, around chainseq and prevhash, and the bytes stored,
// around chainseq, prevhash and hash. Joining the pieces around a chain
// position is all the sealing left to do under the chain head lock (see
// store/migrations/015_evidence_append.sql), so the encoding, parsing and
// canonicalising happen before the lock is taken.
type sealCut struct {
	canon [3][]byte
	body  [4][]byte
}

// prepared is an event encoded with placeholders where its seal goes,
// checked for secrets and cut around the placeholders: what the Builder
// leaves for AppendMany. of is the event as it was prepared (without
// prepared), to tell whether it has changed since.
type prepared struct {
	of         Event
	seq        int64
	prev, hash string
	cut        sealCut
}

// prepare encodes ev with placeholders where the seal goes, checks the
// encoding for secrets (refuseSecrets, leaving out the placeholders) and
// cuts its stored and canonical forms at them, parsing it once for both.
// The placeholders are random, so nothing an event carries (a username, a
// statement) can be taken for one; should a placeholder still occur more
// than once, it tries fresh ones. dataCompact says ev.Data is compact,
// valid JSON, as the Builder encodes it.
func prepare(ev Event, dataCompact bool) (prepared, error) {
	if err := checkComplete(ev); err != nil {
		return prepared{}, err
	}
	ev.prepared = nil
	of := ev
	of.Data = bytes.Clone(ev.Data) // a caller may change ev.Data in place
	for range 4 {
		seq, prev, hash, err := placeholders()
		if err != nil {
			return prepared{}, err
		}
		ev.ChainSeq, ev.PrevHash, ev.Hash = seq, prev, hash
		body, err := encodeEvent(ev, dataCompact)
		if err != nil {
			return prepared{}, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		canon, err := checkAndCanonicalise(body)
		if err != nil {
			return prepared{}, fmt.Errorf("event %s: %w", ev.ID, err)
		}
		seqText := []byte(strconv.FormatInt(seq, 10))
		b, okBody := cutAt(body, seqText, []byte(prev), []byte(hash))
		c, okCanon := cutAt(canon, seqText, []byte(prev))
		if okBody && okCanon {
			cut := sealCut{canon: [3][]byte(c), body: [4][]byte(b)}
			return prepared{of: of, seq: seq, prev: prev, hash: hash, cut: cut}, nil
		}
	}
	return prepared{}, fmt.Errorf("seal event %s: its encoding keeps repeating the seal's placeholders", ev.ID)
}

// encodeEvent is encodeJSON(ev). encoding/json checks and compacts the data
// of an event again (json.RawMessage), a tenth of building one; data the
// Builder encoded is compact and valid already, so the envelope is encoded
// around a stand-in for it, and the data is put in its place.
func encodeEvent(ev Event, dataCompact bool) ([]byte, error) {
	const standIn = `,"data":0}` // Data is Event's last field
	if !dataCompact {
		return encodeJSON(ev)
	}
	data := ev.Data
	ev.Data = json.RawMessage("0")
	body, err := encodeJSON(ev)
	if err != nil || !bytes.HasSuffix(body, []byte(standIn)) {
		ev.Data = data
		return encodeJSON(ev)
	}
	out := make([]byte, 0, len(body)+len(data))
	out = append(out, body[:len(body)-len("0}")]...)
	out = append(out, data...)
	return append(out, '}'), nil
}

// checkAndCanonicalise refuses an event encoded by prepare (valid JSON, by
// encoding/json) if anything but its seal placeholders looks like a
// secret, and returns the canonical form that its hash covers. The event is
// parsed into a tree only when its tokens hold something that looks like a
// secret (the placeholders among them), to tell which and where.
func checkAndCanonicalise(body []byte) ([]byte, error) {
	if schemas.HoldsSecretJSON(body) {
		obj, err := eventObject(parseEncoded(body))
		if err != nil {
			return nil, err
		}
		delete(obj, "prevhash")
		if err := refuseSecrets(obj); err != nil {
			return nil, err
		}
	}
	return canonicalEvent(body)
}

// cutFor returns ev's cut for sealing: the Builder's, when ev is as it was
// built; else ev is checked and cut anew (an event made or changed outside
// the Builder).
func cutFor(ev Event) (sealCut, error) {
	if p := ev.prepared; p != nil && unchanged(ev, p.of) {
		return p.cut, nil
	}
	p, err := prepare(ev, false)
	return p.cut, err
}

// unchanged reports whether ev still has every field it was prepared with.
// Times must be equal as values (instant and location), not just as
// instants: a time in another location encodes differently.
func unchanged(ev, of Event) bool {
	return ev.SpecVersion == of.SpecVersion && ev.ID == of.ID && ev.Source == of.Source &&
		ev.Type == of.Type && ev.Subject == of.Subject && ev.Time == of.Time &&
		ev.DataContentType == of.DataContentType && ev.DataSchema == of.DataSchema &&
		ev.ChainSeq == of.ChainSeq && ev.PrevHash == of.PrevHash && ev.Hash == of.Hash &&
		bytes.Equal(ev.Data, of.Data)
}

// placeholders returns a chain position and two hash-shaped strings that no
// event will hold by chance.
func placeholders() (int64, string, string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1<<52))
	if err != nil {
		return 0, "", "", fmt.Errorf("seal placeholders: %w", err)
	}
	var raw [64]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return 0, "", "", fmt.Errorf("seal placeholders: %w", err)
	}
	seq := 1<<52 + n.Int64()
	return seq, HashPrefix + hex.EncodeToString(raw[:32]), HashPrefix + hex.EncodeToString(raw[32:]), nil
}

// cutAt splits doc around marks, which must each occur exactly once and in
// this order.
func cutAt(doc []byte, marks ...[]byte) ([][]byte, bool) {
	out := make([][]byte, 0, len(marks)+1)
	for _, m := range marks {
		if bytes.Count(doc, m) != 1 {
			return nil, false
		}
		i := bytes.Index(doc, m)
		out = append(out, doc[:i])
		doc = doc[i+len(m):]
	}
	return append(out, doc), true
}
