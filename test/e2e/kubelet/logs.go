package kubelet

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// FollowLinePrefix starts each line written after the canned lines while a
// client follows the logs; the line number follows it.
const FollowLinePrefix = "follow line "

// SetLogs sets the lines every container's log starts with, and how often a
// following client (kubectl logs -f) gets one more line after them. With a
// zero interval, followed logs end after the canned lines.
func (k *Kubelet) SetLogs(lines []string, followInterval time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.logLines = append([]string(nil), lines...)
	k.logInterval = followInterval
}

func (k *Kubelet) logConfig() ([]string, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.logLines, k.logInterval
}

// serveContainerLogs answers GET /containerLogs/<ns>/<pod>/<container>
// with the canned lines (honouring tailLines) and, with follow=true, one
// more line per interval until the client goes away.
func (k *Kubelet) serveContainerLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lines, interval := k.logConfig()
	if s := q.Get("tailLines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("invalid tailLines %q", s), http.StatusBadRequest)
			return
		}
		lines = lines[max(0, len(lines)-n):]
	}
	w.Header().Set("Content-Type", "text/plain")
	rc := http.NewResponseController(w)
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return
		}
	}
	// Flush so a following client sees the canned lines before the first
	// tick rather than when a buffer fills.
	if err := rc.Flush(); err != nil {
		return
	}
	if follow, _ := strconv.ParseBool(q.Get("follow")); !follow || interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		if _, err := fmt.Fprintf(w, "%s%d\n", FollowLinePrefix, n); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
