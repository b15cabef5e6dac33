package status

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
)

// sentStream is a Configuration stream whose sends succeed.
type sentStream struct{ grpc.ServerStream }

func (sentStream) SendMsg(any) error { return nil }

// The status API names the keys of GitLab's agent that an agent's config
// commit sets and that have no effect here; a later commit without them
// clears the list, a refused one leaves it.
func TestStatusShowsIgnoredKeys(t *testing.T) {
	store := NewStore(prometheus.NewRegistry())
	stream := &configStream{ServerStream: sentStream{}, agent: "prod", store: store}
	send := func(commit, yaml, errMsg string) {
		resp := &rpc.ConfigurationResponse{CommitId: commit, Error: errMsg}
		if errMsg == "" {
			cfg, err := agentcfg.Parse([]byte(yaml), "group/config")
			if err != nil {
				t.Fatal(err)
			}
			if resp.ConfigJson, err = cfg.ToJSON(); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.SendMsg(resp); err != nil {
			t.Fatal(err)
		}
	}
	status := func() Agent {
		st := Agent{Name: "prod"}
		store.Fill("prod", &st)
		return st
	}

	send("c1", "ci_access: {groups: [{id: g}]}\nflux: {webhook_receiver_url: http://x}\n", "")
	if st := status(); st.ConfigCommit != "c1" || !slices.Equal(st.ConfigIgnoredKeys, []string{"flux"}) {
		t.Errorf("after c1: %+v", st)
	}
	send("c2", "", "line 1: broken")
	if st := status(); st.ConfigCommit != "c1" || st.ConfigError == "" || !slices.Equal(st.ConfigIgnoredKeys, []string{"flux"}) {
		t.Errorf("after a refused c2: %+v", st)
	}
	send("c3", "observability: {logging: {level: debug}}\n", "")
	if st := status(); st.ConfigCommit != "c3" || len(st.ConfigIgnoredKeys) != 0 {
		t.Errorf("after c3: %+v", st)
	}
}
