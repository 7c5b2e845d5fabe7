package evidence

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
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

// cutSeal encodes ev with placeholders where the seal goes and cuts both
// encodings at them. The placeholders are random, so nothing an event
// carries (a username, a statement) can be taken for one; should a
// placeholder still occur more than once, it tries fresh ones.
func cutSeal(ev Event) (sealCut, error) {
	for range 4 {
		seq, prev, hash, err := placeholders()
		if err != nil {
			return sealCut{}, err
		}
		ev.ChainSeq, ev.PrevHash, ev.Hash = seq, prev, hash
		body, err := encodeJSON(ev)
		if err != nil {
			return sealCut{}, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		canon, err := canonicalWithoutHash(body)
		if err != nil {
			return sealCut{}, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		seqText := []byte(strconv.FormatInt(seq, 10))
		b, okBody := cutAt(body, seqText, []byte(prev), []byte(hash))
		c, okCanon := cutAt(canon, seqText, []byte(prev))
		if okBody && okCanon {
			return sealCut{canon: [3][]byte(c), body: [4][]byte(b)}, nil
		}
	}
	return sealCut{}, fmt.Errorf("seal event %s: its encoding keeps repeating the seal's placeholders", ev.ID)
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
