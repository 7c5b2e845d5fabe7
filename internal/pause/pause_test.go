package pause

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestForEndsEarlyOnWakeAndOnCancel(t *testing.T) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	if !For(context.Background(), time.Hour, wake) {
		t.Fatal("a wake-up must report true: the loop carries on")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if For(ctx, time.Hour, nil) {
		t.Fatal("an ended context must report false: the loop returns")
	}
	if !For(context.Background(), time.Millisecond, nil) {
		t.Fatal("a pause that ran its course must report true")
	}
}

func TestUntilStopsWhenDoneOrAtTheDeadline(t *testing.T) {
	calls := 0
	v, err := Until(context.Background(), time.Minute, func() (int, bool, error) {
		calls++
		return calls, calls == 3, nil
	})
	if v != 3 || err != nil {
		t.Fatalf("Until = %d, %v; want the third call's value", v, err)
	}
	start := time.Now()
	v, err = Until(context.Background(), 30*time.Millisecond, func() (int, bool, error) { return 7, false, nil })
	if v != 7 || err != nil || time.Since(start) > 10*time.Second {
		t.Fatalf("Until never done = %d, %v after %s; want the last value at the deadline", v, err, time.Since(start))
	}
	boom := errors.New("boom")
	calls = 0
	if _, err := Until(context.Background(), time.Minute, func() (int, bool, error) { calls++; return 0, false, boom }); err != boom || calls != 1 {
		t.Fatalf("Until with a failing check = %v after %d calls; want the error at once", err, calls)
	}
}
