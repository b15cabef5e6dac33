package bench

import (
	"context"
	"testing"
	"time"
)

// TestPaths checks, in a second or two, that every path of the
// comparison suite (`make bench`) carries a small answer and a 4 MiB one, with and without a
// delay link, so that `make test` catches a broken harness before
// `make bench` spends 15 minutes on it.
func TestPaths(t *testing.T) {
	be, err := startBackend()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := be.stop(); err != nil {
			t.Error(err)
		}
	}()
	for _, withLink := range []bool{false, true} {
		ps, err := startPaths(be, ladderPaths, withLink)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			p.setRTT(2 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if err := p.fetch(ctx, smallSize); err != nil {
				t.Errorf("link %v: %v", withLink, err)
			}
			if err := p.fetch(ctx, 4<<20); err != nil {
				t.Errorf("link %v: %v", withLink, err)
			}
			cancel()
		}
		if err := stopPaths(ps); err != nil {
			t.Errorf("stopping paths: %v", err)
		}
	}
}
