package agentk

import (
	"strings"
	"testing"
)

// agentk offers protocol 2 unless told otherwise; AGENTK_PROXY_PROTOCOL=1
// (or ProxyProtocol) narrows the offer, and a value it cannot honour is
// refused at startup, naming the variable.
func TestProxyProtocolOption(t *testing.T) {
	base := Options{KasAddress: "wss://kas/", Token: "t"}
	t.Setenv("AGENTK_PROXY_PROTOCOL", "")
	if o := base; o.Validate() != nil || o.proxyProtocol() != 0 {
		t.Errorf("default: %v %d", o.Validate(), o.proxyProtocol())
	}
	t.Setenv("AGENTK_PROXY_PROTOCOL", "1")
	if o := base; o.Validate() != nil || o.proxyProtocol() != 1 {
		t.Errorf("AGENTK_PROXY_PROTOCOL=1: %v %d", o.Validate(), o.proxyProtocol())
	}
	o := base
	o.ProxyProtocol = 2 // the option wins over the environment
	if o.Validate() != nil || o.proxyProtocol() != 2 {
		t.Errorf("ProxyProtocol 2: %v %d", o.Validate(), o.proxyProtocol())
	}
	for _, v := range []string{"0", "3", "two"} {
		t.Setenv("AGENTK_PROXY_PROTOCOL", v)
		if err := base.Validate(); err == nil || !strings.Contains(err.Error(), `AGENTK_PROXY_PROTOCOL "`+v+`": want 1 to 2`) {
			t.Errorf("AGENTK_PROXY_PROTOCOL=%s: %v", v, err)
		}
	}
	t.Setenv("AGENTK_PROXY_PROTOCOL", "")
	o = base
	o.ProxyProtocol = 3
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "ProxyProtocol 3") {
		t.Errorf("ProxyProtocol 3: %v", err)
	}
}
