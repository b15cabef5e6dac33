package gitops

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kubetunnel/api/rpc"
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/gitops/manifests"
	"kubetunnel/kas/identity"
)

// The ref an agent asks for: a branch, a tag or a full commit SHA; an
// abbreviated SHA cannot be resolved in a mirror and is refused.
func TestDecodeRef(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	for in, want := range map[string]gitrepo.Ref{
		"":                            {},
		rpc.EncodeRef("main", "", ""): {Branch: "main"},
		rpc.EncodeRef("", "v1", ""):   {Tag: "v1"},
		rpc.EncodeRef("", "", sha):    {Commit: sha},
	} {
		if got, err := decodeRef(in); err != nil || got != want {
			t.Errorf("decodeRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{rpc.EncodeRef("", "", "abc123"), "branch:", "nonsense"} {
		if _, err := decodeRef(in); err == nil {
			t.Errorf("decodeRef(%q) accepted", in)
		}
	}
}

// The gRPC code an agent gets for a selection error: a limit is
// FailedPrecondition (retried only after a new commit), a bad glob
// InvalidArgument, anything else Unavailable.
func TestSelectionStatus(t *testing.T) {
	for err, want := range map[error]codes.Code{
		manifests.ErrLimit:       codes.FailedPrecondition,
		manifests.ErrInvalidGlob: codes.InvalidArgument,
		errors.New("disk"):       codes.Unavailable,
	} {
		got := selectionStatus("group/app", err)
		if status.Code(got) != want || !strings.Contains(got.Error(), `manifest project "group/app"`) {
			t.Errorf("%v: %v, want %v naming the project", err, got, want)
		}
	}
}

// An agent's config for one commit: no file is the default config, an
// unreadable or invalid file an error naming the file or the commit.
func TestBuildConfig(t *testing.T) {
	s := New(Config{Logger: slog.New(slog.DiscardHandler)})
	a := identity.Agent{Key: "prod", Name: "prod", ConfigProject: "group/agents"}
	if r := s.build(a, "c1", nil, gitrepo.ErrNotFound); r.Error != "" || len(r.ConfigJson) == 0 || r.AgentName != "prod" || r.CommitId != "c1" {
		t.Errorf("no config file: %+v, want the default config", r)
	}
	if r := s.build(a, "c2", []byte("gitops:\n  manifest_projectz: []\n"), nil); !strings.Contains(r.Error, "commit c2") || !strings.Contains(r.Error, "manifest_projectz") || r.ConfigJson != nil {
		t.Errorf("invalid config: %+v", r)
	}
	if r := s.build(a, "c3", nil, errors.New("object missing")); r.Error != AgentConfigPath("prod")+": object missing" {
		t.Errorf("unreadable config: %q", r.Error)
	}
	if r := s.build(a, "c4", []byte("observability:\n  logging:\n    level: debug\n"), nil); r.Error != "" || !strings.Contains(string(r.ConfigJson), "debug") {
		t.Errorf("valid config: %+v", r)
	}
}
