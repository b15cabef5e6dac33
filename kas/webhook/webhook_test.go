package webhook

import (
	"slices"
	"testing"

	"kubetunnel/gitops/gitrepo"
)

func TestRepoKey(t *testing.T) {
	same := []string{
		"https://gitlab.example.com/group/deployments.git",
		"https://GitLab.Example.com/Group/Deployments",
		"HTTPS://gitlab.example.com/group/deployments/",
		"http://gitlab.example.com:8080/group/deployments.git",
		"https://oauth2@gitlab.example.com/group/deployments.git",
		"ssh://git@gitlab.example.com:2222/group/deployments.git",
		"git@gitlab.example.com:group/deployments.git",
		"gitlab.example.com:group/deployments",
	}
	for _, u := range same {
		if got := repoKey(u); got != "gitlab.example.com/group/deployments" {
			t.Errorf("repoKey(%q) = %q", u, got)
		}
	}
	for u, want := range map[string]string{
		"file:///srv/git/deploy.git": "/srv/git/deploy",
		"/srv/git/deploy":            "/srv/git/deploy",
		"https://github.com/o/r.git": "github.com/o/r",
		"":                           "",
	} {
		if got := repoKey(u); got != want {
			t.Errorf("repoKey(%q) = %q, want %q", u, got, want)
		}
	}
}

func TestMatchRepositories(t *testing.T) {
	repos := []gitrepo.Repository{
		{ID: "group/deployments", URL: "https://gitlab.example.com/group/deployments.git"},
		{ID: "mirror", URL: "ssh://git@gitlab.example.com/group/deployments.git"},
		{ID: "other", URL: "https://github.com/o/r.git"},
	}
	cases := []struct {
		urls, names []string
		want        []string
	}{
		{[]string{"https://gitlab.example.com/group/deployments.git"}, nil, []string{"group/deployments", "mirror"}},
		{nil, []string{"Group/Deployments"}, []string{"group/deployments"}},
		{[]string{"https://github.com/O/R"}, []string{"O/R"}, []string{"other"}},
		{[]string{"https://gitlab.example.com/group/else.git"}, []string{"group/else"}, []string{}},
	}
	for _, c := range cases {
		if got := matchRepositories(repos, c.urls, c.names); !slices.Equal(got, c.want) {
			t.Errorf("match(%q, %q) = %q, want %q", c.urls, c.names, got, c.want)
		}
	}
}
