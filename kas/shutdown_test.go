package kas

import (
	"strings"
	"testing"
	"time"
)

func TestListenGracePeriodConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte("agent: {listen: {listen_grace_period: 5s}}"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Agent.Listen.ListenGracePeriod; got != 5*time.Second {
		t.Errorf("listen_grace_period = %v, want 5s", got)
	}
	if cfg, err = ParseConfig(nil); err != nil || cfg.Agent.Listen.ListenGracePeriod != 0 {
		t.Errorf("default listen_grace_period = %v (%v), want 0: a bare kas stops at once", cfg.Agent.Listen.ListenGracePeriod, err)
	}
	const want = "agent.listen.listen_grace_period: must not be negative"
	if _, err := ParseConfig([]byte("agent: {listen: {listen_grace_period: -1s}}")); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("negative listen_grace_period: %v, want an error with %q", err, want)
	}
}
