package testutil

import (
	"fmt"
	"net/http"
	"time"
)

// ServeWatch answers a request as a Kubernetes watch does: a stream of
// JSON events, one a line ({"type":"ADDED","n":0}, then n 1, 2, …), each
// flushed, one every interval, until the client goes away or stop (if not
// nil) is closed. A fake API server routes its watch paths here, so a
// test can see events pass through a proxy one by one.
func ServeWatch(w http.ResponseWriter, r *http.Request, every time.Duration, stop <-chan struct{}) {
	w.Header().Set("Content-Type", "application/json")
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		fmt.Fprintf(w, "{\"type\":\"ADDED\",\"n\":%d}\n", i)
		if err := http.NewResponseController(w).Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
	}
}
