package pause

import (
	"context"
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
