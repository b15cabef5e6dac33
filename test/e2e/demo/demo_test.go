package main

import (
	"testing"
)

// make demo keeps working: the whole setup runs, a manifest is applied and
// read back through kas, and everything stops cleanly.
func TestDemoOnce(t *testing.T) {
	if err := run(t.Context(), true); err != nil {
		t.Fatal(err)
	}
}
