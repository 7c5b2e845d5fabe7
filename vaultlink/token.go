package vaultlink

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// tokenSource gives the current token: the configured one, or the content
// of the token file, re-read when the file's size, modification time or
// inode changes (Vault Agent and Kubernetes replace it by rename). The file
// is looked at no more than once per recheck.
type tokenSource struct {
	static  string
	path    string
	recheck time.Duration
	now     func() time.Time

	mu        sync.Mutex
	token     string
	stat      os.FileInfo
	checkedAt time.Time
	// generation counts token changes, so the keeper notices a new token.
	generation int
}

// errNoToken: the token file is empty.
var errNoToken = errors.New("vault token file is empty")

func newTokenSource(static, path string, now func() time.Time) *tokenSource {
	return &tokenSource{static: static, path: path, recheck: time.Second, now: now}
}

// Token returns the current token and its generation.
func (s *tokenSource) Token() (string, int, error) {
	if s.path == "" {
		return s.static, 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.token != "" && now.Sub(s.checkedAt) < s.recheck {
		return s.token, s.generation, nil
	}
	s.checkedAt = now
	st, err := os.Stat(s.path)
	if err != nil {
		if s.token != "" {
			// Keep using the last token while the file is being replaced.
			return s.token, s.generation, nil
		}
		return "", 0, fmt.Errorf("vault token file: %w", err)
	}
	if s.token != "" && s.stat != nil && os.SameFile(st, s.stat) && st.Size() == s.stat.Size() && st.ModTime().Equal(s.stat.ModTime()) {
		return s.token, s.generation, nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		if s.token != "" {
			return s.token, s.generation, nil
		}
		return "", 0, fmt.Errorf("vault token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		if s.token != "" {
			return s.token, s.generation, nil
		}
		return "", 0, errNoToken
	}
	s.stat = st
	if tok != s.token {
		s.token = tok
		s.generation++
	}
	return s.token, s.generation, nil
}

// invalidate makes the next Token call look at the file again (after Vault
// refused the token: a new one may be there).
func (s *tokenSource) invalidate() {
	s.mu.Lock()
	s.checkedAt = time.Time{}
	s.stat = nil
	s.mu.Unlock()
}
