package apiservertest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/internal/testutil/fakegitlab"
)

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(controlplane.Main(m, &cp, controlplane.Options{LocalOnly: true}))
}

// grant asks the fake GitLab through kas's real client, as kas will.
func grant(t *testing.T, gl *fakegitlab.Server, header http.Header) *gitlabaccess.Grant {
	t.Helper()
	u, _ := url.Parse(gl.URL)
	client, err := gitlab.New(gitlab.Config{Address: u, Secret: gl.Secret, HTTPClient: gl.Client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gl.Client().CloseIdleConnections)
	a, err := gitlabaccess.NewAuthorizer(gitlabaccess.Config{GitLab: client})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "https://kas.invalid/api/v1/pods", nil)
	r.Header = header
	cred, err := gitlabaccess.ParseCredential(r)
	if err != nil {
		t.Fatal(err)
	}
	g, err := a.Authorize(t.Context(), cred)
	if err != nil {
		t.Fatal(err)
	}
	if g.Identity == nil {
		t.Fatal("no identity to impersonate")
	}
	return g
}

// clientAs is an admin client whose requests carry id's impersonation
// headers, written by SetImpersonationHeaders as agentk will write them.
func clientAs(t *testing.T, id *gitlabaccess.Identity) kubernetes.Interface {
	t.Helper()
	cfg := cp.RESTConfig()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			id.SetImpersonationHeaders(r.Header)
			return rt.RoundTrip(r)
		})
	})
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// whoami is kubectl auth whoami: the identity the API server authenticated.
func whoami(t *testing.T, c kubernetes.Interface) authenticationv1.UserInfo {
	t.Helper()
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.UserInfo
}

func checkUserInfo(t *testing.T, got authenticationv1.UserInfo, id *gitlabaccess.Identity) {
	t.Helper()
	wantGroups := append(slices.Clone(id.Groups), "system:authenticated")
	if got.Username != id.User || !slices.Equal(got.Groups, wantGroups) {
		t.Fatalf("API server sees user %q groups %q, want %q %q", got.Username, got.Groups, id.User, wantGroups)
	}
	want := id.ExtraMap()
	if len(got.Extra) != len(want) {
		t.Fatalf("API server sees extra %v, want %v", got.Extra, want)
	}
	for k, v := range want {
		if !slices.Equal([]string(got.Extra[k]), v) {
			t.Fatalf("API server sees extra %q = %q, want %q (all: %v)", k, got.Extra[k], v, got.Extra)
		}
	}
}

// A CI job with access_as ci_job in environment prod (tier production):
// the API server authenticates exactly GitLab's ci_job identity, and a
// RoleBinding on gitlab:project_env_tier:<project id>:production lets it
// list pods in one namespace and nothing in another.
func TestCIJobIdentityOnAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	gl := fakegitlab.New(t)
	cfgProj := gl.AddProject("group/agents", nil)
	app := gl.AddProject("group/sub/app", nil)
	agent := gl.AddAgent("prod", cfgProj)
	job, tok := gl.AddJob(app, "alice", agent)
	gl.ConfigureJob(job, func(j *fakegitlab.Job) {
		j.Groups = []int64{23, 25}
		j.Environment = &gitlab.Environment{Slug: "prod", Tier: "production"}
		j.AccessAs = json.RawMessage(`{"ci_job":{}}`)
	})
	g := grant(t, gl, http.Header{"Authorization": {"Bearer ci:" + strconv.FormatInt(agent.ID, 10) + ":" + tok}})
	c := clientAs(t, g.Identity)

	info := whoami(t, c)
	checkUserInfo(t, info, g.Identity)
	if info.Username != "gitlab:ci_job:"+strconv.FormatInt(job.ID, 10) || info.Extra["agent.gitlab.com/environment_tier"][0] != "production" {
		t.Fatalf("user info %+v", info)
	}

	allowed, err := cp.CreateNamespace(ctx, t.Name()+"-allowed")
	if err != nil {
		t.Fatal(err)
	}
	other, err := cp.CreateNamespace(ctx, t.Name()+"-other")
	if err != nil {
		t.Fatal(err)
	}
	admin := cp.Clientset()
	if _, err := admin.RbacV1().Roles(allowed).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	group := "gitlab:project_env_tier:" + strconv.FormatInt(app.ID, 10) + ":production"
	if _, err := admin.RbacV1().RoleBindings(allowed).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "production-jobs"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: group}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// RBAC's cache takes a moment to see the new binding; anything but
	// Forbidden while waiting is a failure.
	testutil.Poll(t, 100*time.Millisecond, 30*time.Second, "the production job to list pods in "+allowed, func() error {
		_, err := c.CoreV1().Pods(allowed).List(ctx, metav1.ListOptions{})
		if err != nil && !apierrors.IsForbidden(err) {
			t.Fatalf("listing pods in %s as the production job: %v", allowed, err)
		}
		return err
	})
	if _, err := c.CoreV1().Pods(other).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing pods in %s as the production job: %v, want Forbidden", other, err)
	}
}

// A user with a PAT and user_access access_as user: the API server
// authenticates gitlab:user:<username> with the role groups and extra.
func TestUserIdentityOnAPIServer(t *testing.T) {
	gl := fakegitlab.New(t)
	cfgProj := gl.AddProject("group/agents", nil)
	agent := gl.AddAgent("prod", cfgProj)
	alice, tok := gl.AddUser("alice", agent)
	gl.ConfigureUser(alice, func(u *fakegitlab.User) {
		u.AsUser = true
		u.Projects = []gitlab.RoleGrant{{ID: gitlab.ID(cfgProj.ID), Roles: []string{"reporter", "developer"}}}
		u.Groups = []gitlab.RoleGrant{{ID: 23, Roles: []string{"maintainer"}}}
	})
	g := grant(t, gl, http.Header{"Authorization": {"Bearer pat:" + strconv.FormatInt(agent.ID, 10) + ":" + tok}})
	info := whoami(t, clientAs(t, g.Identity))
	checkUserInfo(t, info, g.Identity)
	if info.Username != "gitlab:user:alice" || !slices.Contains(info.Groups, "gitlab:project_role:"+strconv.FormatInt(cfgProj.ID, 10)+":developer") ||
		info.Extra["agent.gitlab.com/access_type"][0] != "personal_access_token" {
		t.Fatalf("user info %+v", info)
	}
}
