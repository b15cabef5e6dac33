package gitlabaccess_test

import (
	"reflect"
	"strings"
	"testing"

	"kubetunnel/internal/gitlabaccess"
)

func TestIdentityHeaderRoundTrip(t *testing.T) {
	id := &gitlabaccess.Identity{
		User: "gitlab:ci_job:7", UID: "ü-1",
		Groups: []string{"gitlab:ci_job", "gitlab:project_env:150:review/ä b"},
		Extra: []gitlabaccess.Extra{
			{Key: "agent.gitlab.com/id", Values: []string{"4"}},
			{Key: "agent.gitlab.com/environment_slug", Values: []string{"review-x", ""}},
		},
	}
	v := id.HeaderValue()
	if strings.ContainsAny(v, " \t\r\n:,;=+/") {
		t.Fatalf("header value %q has characters that are not base64url", v)
	}
	got, err := gitlabaccess.ParseIdentityHeader(v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, id) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, id)
	}
}

func TestParseIdentityHeaderRefuses(t *testing.T) {
	enc := func(id gitlabaccess.Identity) string { return id.HeaderValue() }
	for name, v := range map[string]string{
		"empty":            "",
		"not base64url":    "a+b/",
		"not JSON":         "bm90IGpzb24",
		"no user":          enc(gitlabaccess.Identity{Groups: []string{"g"}}),
		"empty group":      enc(gitlabaccess.Identity{User: "u", Groups: []string{""}}),
		"control in user":  enc(gitlabaccess.Identity{User: "u\r\nImpersonate-Group: system:masters"}),
		"control in extra": enc(gitlabaccess.Identity{User: "u", Extra: []gitlabaccess.Extra{{Key: "k", Values: []string{"a\x00"}}}}),
		"empty extra key":  enc(gitlabaccess.Identity{User: "u", Extra: []gitlabaccess.Extra{{Key: "", Values: []string{"a"}}}}),
		"repeated extra":   enc(gitlabaccess.Identity{User: "u", Extra: []gitlabaccess.Extra{{Key: "k"}, {Key: "k"}}}),
		"oversized":        strings.Repeat("A", gitlabaccess.MaxIdentityHeaderLen+1),
	} {
		if id, err := gitlabaccess.ParseIdentityHeader(v); err == nil {
			t.Errorf("%s: accepted %+v", name, id)
		}
	}
}

// FuzzParseIdentityHeader: what agentk accepts from the wire is valid and
// encodes back to itself.
func FuzzParseIdentityHeader(f *testing.F) {
	f.Add((&gitlabaccess.Identity{User: "gitlab:user:a", Groups: []string{"gitlab:user"}, Extra: []gitlabaccess.Extra{{Key: "agent.gitlab.com/id", Values: []string{"1"}}}}).HeaderValue())
	f.Add("eyJ1IjoiYSJ9")
	f.Add("eyJ1IjoiYSIsIngiOlt7ImsiOiIifV19")
	f.Fuzz(func(t *testing.T, v string) {
		id, err := gitlabaccess.ParseIdentityHeader(v)
		if err != nil {
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("accepted an invalid identity: %v", err)
		}
		again, err := gitlabaccess.ParseIdentityHeader(id.HeaderValue())
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(id)) {
			t.Fatalf("re-encoding %+v gave %+v, %v", id, again, err)
		}
	})
}

// normalize maps empty slices to nil: JSON does not keep the difference.
func normalize(id *gitlabaccess.Identity) *gitlabaccess.Identity {
	c := *id
	if len(c.Groups) == 0 {
		c.Groups = nil
	}
	c.Extra = nil
	for _, e := range id.Extra {
		if len(e.Values) == 0 {
			e.Values = nil
		}
		c.Extra = append(c.Extra, e)
	}
	return &c
}
