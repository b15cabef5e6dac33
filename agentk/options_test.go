package agentk

import (
	"strings"
	"testing"
)

// Validate names the flag to fix, with GitLab's agentk's flag names, and
// fills the observability defaults.
func TestOptionsValidate(t *testing.T) {
	o := &Options{KasAddress: "wss://kas/", Token: "t"}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.ObservabilityListen != ":8080" || o.ObservabilityListenNetwork != "tcp" {
		t.Errorf("defaults: %q %q", o.ObservabilityListenNetwork, o.ObservabilityListen)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Token: "t"}, "--kas-address is required"},
		{Options{KasAddress: "https://kas/", Token: "t"}, "--kas-address: "},
		{Options{KasAddress: "wss://kas/"}, "no agent token: set --token-file or the AGENTK_TOKEN environment variable"},
		{Options{KasAddress: "wss://kas/", Token: "t", ObservabilityCertFile: "c"}, "--observability-cert-file and --observability-key-file must be set together"},
		{Options{KasAddress: "wss://kas/", Token: "t", ObservabilityListenNetwork: "udp"}, `--observability-listen-network "udp": want tcp, tcp4, tcp6 or unix`},
		{Options{KasAddress: "wss://kas/", Token: "t", KasHeaders: []string{"nocolon"}}, `--kas-header "nocolon"`},
	} {
		if err := tc.o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}
