package kas

import (
	"net"
	"strings"
	"testing"
)

func TestReplicaConfigKeys(t *testing.T) {
	ok := "redis:\n  address: 127.0.0.1:6379\nprivate_api:\n  listen:\n    address: 0.0.0.0:8155\n  authentication_secret_file: /s\n"
	cfg, err := ParseConfig([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Redis.KeyPrefix != "kas" || cfg.Redis.AgentTTL != DefaultRedisAgentTTL || cfg.PrivateAPI.DialTimeout != DefaultPeerDialTimeout {
		t.Errorf("defaults not applied: %+v %+v", cfg.Redis, cfg.PrivateAPI)
	}
	cases := map[string]string{
		"redis:\n  address: 127.0.0.1:6379\n":                                                                                  "private_api: missing",
		"private_api:\n  authentication_secret_file: /s\n":                                                                     "redis: missing",
		"redis:\n  address: redis\nprivate_api:\n  authentication_secret_file: /s\n":                                           `redis.address: "redis" is not host:port`,
		"redis:\n  address: r:6379\nprivate_api: {}\n":                                                                         "private_api.authentication_secret_file: missing",
		"redis:\n  address: r:6379\n  agent_ttl: 10s\n  refresh_period: 10s\nprivate_api:\n  authentication_secret_file: /s\n": "redis.refresh_period: 10s must be shorter than redis.agent_ttl",
		"redis:\n  address: r:6379\n  tls:\n    ca_certificate_file: /ca\nprivate_api:\n  authentication_secret_file: /s\n":    "redis.tls.enabled: TLS files are set but enabled is false",
		"redis:\n  address: r:6379\n  passwd: x\nprivate_api:\n  authentication_secret_file: /s\n":                             `unknown key "passwd"`,
		"redis:\n  address: r:6379\nprivate_api:\n  authentication_secret_file: /s\n  advertise_address: pod\n":                `private_api.advertise_address: "pod" is not host:port`,
	}
	for doc, want := range cases {
		if _, err := ParseConfig([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", doc, err, want)
		}
	}
}

func TestAdvertiseURL(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4zero, Port: 8155}
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	cases := []struct {
		name   string
		p      PrivateAPISection
		env    map[string]string
		want   string
		errHas string
	}{
		{"config wins", PrivateAPISection{AdvertiseAddress: "kas-0.kas:8155", Listen: Listen{Address: "0.0.0.0:8155"}}, map[string]string{EnvPodIP: "10.0.0.1"}, "http://kas-0.kas:8155", ""},
		{"env address", PrivateAPISection{Listen: Listen{Address: "0.0.0.0:8155"}}, map[string]string{EnvAdvertiseAddress: "10.0.0.2:9000", EnvPodIP: "10.0.0.1"}, "http://10.0.0.2:9000", ""},
		{"pod IP and listen port", PrivateAPISection{Listen: Listen{Address: "0.0.0.0:8155"}}, map[string]string{EnvPodIP: "10.0.0.1"}, "http://10.0.0.1:8155", ""},
		{"IPv6 pod IP", PrivateAPISection{Listen: Listen{Address: "[::]:8155"}}, map[string]string{EnvPodIP: "fd00::1"}, "http://[fd00::1]:8155", ""},
		{"TLS", PrivateAPISection{Listen: Listen{Address: "0.0.0.0:8155", CertificateFile: "c", KeyFile: "k"}}, map[string]string{EnvPodIP: "10.0.0.1"}, "https://10.0.0.1:8155", ""},
		{"unspecified listen", PrivateAPISection{Listen: Listen{Address: "0.0.0.0:8155"}}, nil, "", "set private_api.advertise_address"},
	}
	for _, c := range cases {
		got, err := AdvertiseURL(&c.p, bound, env(c.env))
		if got != c.want || (c.errHas == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.errHas)) {
			t.Errorf("%s: %q %v, want %q %q", c.name, got, err, c.want, c.errHas)
		}
	}
}
