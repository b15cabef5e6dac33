package gitrepo

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		repo Repository
		want string // "" for valid
	}{
		{name: "https", repo: Repository{ID: "a", URL: "https://git.example.com/g/a.git"}},
		{name: "https token", repo: Repository{ID: "a", URL: "https://git.example.com/g/a.git", TokenFile: "/t"}},
		{name: "https token with username", repo: Repository{ID: "a", URL: "https://h/a.git", Username: "bot", TokenFile: "/t"}},
		{name: "https password", repo: Repository{ID: "a", URL: "https://h/a.git", Username: "u", PasswordFile: "/p", CAFile: "/ca"}},
		{name: "ssh", repo: Repository{ID: "a", URL: "ssh://git@h/a.git", SSHKeyFile: "/k", KnownHostsFile: "/kh"}},
		{name: "scp-like", repo: Repository{ID: "a", URL: "git@h:g/a.git", SSHKeyFile: "/k", KnownHostsFile: "/kh"}},
		{name: "file URL", repo: Repository{ID: "a", URL: "file:///srv/git/a"}},
		{name: "local path", repo: Repository{ID: "a", URL: "/srv/git/a"}},
		{name: "http without credentials", repo: Repository{ID: "a", URL: "http://h/a.git"}},

		{name: "no id", repo: Repository{URL: "/a"}, want: "id: required"},
		{name: "no url", repo: Repository{ID: "a"}, want: "url: required"},
		{name: "password in url", repo: Repository{ID: "a", URL: "https://u:secret@h/a.git"}, want: "url: contains a password: put it in password_file or token_file instead"},
		{name: "bad scheme", repo: Repository{ID: "a", URL: "ftp://h/a.git"}, want: `url: scheme "ftp" is not supported: use https://, ssh://, file:// or a local path`},
		{name: "token and password", repo: Repository{ID: "a", URL: "https://h/a", Username: "u", TokenFile: "/t", PasswordFile: "/p"}, want: "token_file: set token_file or password_file, not both"},
		{name: "password without username", repo: Repository{ID: "a", URL: "https://h/a", PasswordFile: "/p"}, want: "username: required with password_file"},
		{name: "username alone", repo: Repository{ID: "a", URL: "https://h/a", Username: "u"}, want: "username: needs password_file or token_file"},
		{name: "credentials over http", repo: Repository{ID: "a", URL: "http://h/a", TokenFile: "/t"}, want: "url: http:// would send the credentials in clear text: use https://"},
		{name: "ssh key on https", repo: Repository{ID: "a", URL: "https://h/a", SSHKeyFile: "/k"}, want: "ssh_key_file: only applies to ssh URLs; remove it"},
		{name: "ssh without key", repo: Repository{ID: "a", URL: "ssh://git@h/a", KnownHostsFile: "/kh"}, want: "ssh_key_file: required for ssh URLs"},
		{name: "ssh without known hosts", repo: Repository{ID: "a", URL: "ssh://git@h/a", SSHKeyFile: "/k"}, want: "known_hosts_file: required for ssh URLs: add the server's host key (ssh-keyscan h)"},
		{name: "token on ssh", repo: Repository{ID: "a", URL: "ssh://git@h/a", SSHKeyFile: "/k", KnownHostsFile: "/kh", TokenFile: "/t"}, want: "token_file: only applies to https URLs; remove it"},
		{name: "credentials on a local path", repo: Repository{ID: "a", URL: "/srv/a", TokenFile: "/t"}, want: "token_file: only applies to https or ssh URLs; remove it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.repo.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("Validate: %v, want %s", err, tc.want)
			}
		})
	}
}

func TestValidateRepositories(t *testing.T) {
	err := ValidateRepositories([]Repository{
		{ID: "a", URL: "/a"},
		{ID: "b"},
		{ID: "a", URL: "/c"},
	})
	want := "repositories[1].url: required\nrepositories[2].id: \"a\" is already used by repositories[0]"
	if err == nil || err.Error() != want {
		t.Errorf("ValidateRepositories: %v, want\n%s", err, want)
	}
	if _, err := New(t.TempDir(), []Repository{{ID: "b"}}, testLogger(t)); err == nil {
		t.Error("New accepted an invalid repository")
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCredentials(t *testing.T) {
	token := writeFile(t, "token", "glpat-secret\n")
	password := writeFile(t, "password", "hunter2")
	for _, tc := range []struct {
		name string
		repo Repository
		want *githttp.BasicAuth
	}{
		{name: "token", repo: Repository{URL: "https://h/a", TokenFile: token}, want: &githttp.BasicAuth{Username: "oauth2", Password: "glpat-secret"}},
		{name: "token with username", repo: Repository{URL: "https://h/a", Username: "bot", TokenFile: token}, want: &githttp.BasicAuth{Username: "bot", Password: "glpat-secret"}},
		{name: "password", repo: Repository{URL: "https://h/a", Username: "u", PasswordFile: password}, want: &githttp.BasicAuth{Username: "u", Password: "hunter2"}},
		{name: "none", repo: Repository{URL: "https://h/a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.repo.credentials()
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if c.auth != nil {
					t.Errorf("auth = %v, want none", c.auth)
				}
				return
			}
			got, ok := c.auth.(*githttp.BasicAuth)
			if !ok || *got != *tc.want {
				t.Errorf("auth = %#v, want %#v", c.auth, tc.want)
			}
		})
	}

	// Errors name the key and never the secret.
	for _, tc := range []struct {
		repo Repository
		want string
	}{
		{Repository{URL: "https://h/a", TokenFile: filepath.Join(t.TempDir(), "missing")}, "token_file: open "},
		{Repository{URL: "https://h/a", TokenFile: writeFile(t, "empty", "\n")}, "token_file: "},
		{Repository{URL: "https://h/a", CAFile: "/nonexistent/ca.pem"}, "ca_file: open /nonexistent/ca.pem"},
		{Repository{URL: "ssh://git@h/a", SSHKeyFile: "/nonexistent/key", KnownHostsFile: "/kh"}, "ssh_key_file: "},
	} {
		_, err := tc.repo.credentials()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("credentials(%+v): %v, want %q…", tc.repo, err, tc.want)
		}
	}
}

// newSSHKey writes a new ed25519 private key in OpenSSH format and returns
// the file and the signer.
func newSSHKey(t *testing.T, name string) (string, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, name, string(pem.EncodeToMemory(block))), signer
}

func TestSSHCredentials(t *testing.T) {
	key, _ := newSSHKey(t, "id_ed25519")
	_, host := newSSHKey(t, "host")
	knownHosts := writeFile(t, "known_hosts", "[git.example.com]:2222 "+string(ssh.MarshalAuthorizedKey(host.PublicKey())))
	for _, tc := range []struct {
		repo     Repository
		wantUser string
	}{
		{Repository{URL: "ssh://git.example.com:2222/g/a.git", SSHKeyFile: key, KnownHostsFile: knownHosts}, "git"},
		{Repository{URL: "ssh://deploy@git.example.com:2222/g/a.git", SSHKeyFile: key, KnownHostsFile: knownHosts}, "deploy"},
		{Repository{URL: "ssh://deploy@git.example.com:2222/g/a.git", Username: "bot", SSHKeyFile: key, KnownHostsFile: knownHosts}, "bot"},
	} {
		c, err := tc.repo.credentials()
		if err != nil {
			t.Fatal(err)
		}
		keys, ok := c.auth.(*gitssh.PublicKeys)
		if !ok {
			t.Fatalf("auth = %T, want *ssh.PublicKeys", c.auth)
		}
		if keys.User != tc.wantUser {
			t.Errorf("%s: user %q, want %q", tc.repo.URL, keys.User, tc.wantUser)
		}
		if keys.HostKeyCallback == nil || !slices.Equal(keys.HostKeyAlgorithms, []string{ssh.KeyAlgoED25519}) {
			t.Errorf("host key check not set up from known_hosts: algorithms %v", keys.HostKeyAlgorithms)
		}
	}
}
