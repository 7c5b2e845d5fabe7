package nodes

import (
	"errors"
	"strings"
	"testing"
)

func TestCompatible(t *testing.T) {
	t.Parallel()
	issuer := Self{IssuesCommands: true, SigningKeyID: "aaaa", SigningPublicKey: "PUB-A", AcceptedKeyIDs: []string{"aaaa"}}
	revoker := Node{ID: "r1", Self: Self{RunsRevoker: true, SigningKeyID: "bbbb", SigningPublicKey: "PUB-B", AcceptedKeyIDs: []string{"bbbb"}}}
	both := Self{IssuesCommands: true, RunsRevoker: true, SigningKeyID: "aaaa", SigningPublicKey: "PUB-A", AcceptedKeyIDs: []string{"aaaa"}}
	otherIssuer := Node{ID: "i2", Self: Self{IssuesCommands: true, SigningKeyID: "cccc", SigningPublicKey: "PUB-C", AcceptedKeyIDs: []string{"cccc"}}}
	for _, tc := range []struct {
		name string
		self Self
		live []Node
		want []string // what the error says; nil: compatible
	}{
		{"alone", both, nil, nil},
		{"a revoker that refuses our key", issuer, []Node{revoker}, []string{"does not accept this process's signing key aaaa", "add PUB-A"}},
		{"we refuse an issuer's key", both, []Node{otherIssuer}, []string{"this process does not accept the signing key cccc", "add PUB-C"}},
		{"a revoker that accepts our key", issuer, []Node{{ID: "r2", Self: Self{RunsRevoker: true, AcceptedKeyIDs: []string{"bbbb", "aaaa"}}}}, nil},
		{"an ingest-only process", both, []Node{{ID: "n3", Self: Self{SigningKeyID: "dddd"}}}, nil},
		{"we accept the issuer", Self{RunsRevoker: true, AcceptedKeyIDs: []string{"cccc"}}, []Node{otherIssuer}, nil},
	} {
		err := Compatible(tc.self, tc.live)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != nil && !errors.Is(err, ErrIncompatible):
			t.Errorf("%s: %v, want ErrIncompatible", tc.name, err)
		case tc.want != nil:
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %q does not say %q", tc.name, err, w)
				}
			}
		}
	}
}
