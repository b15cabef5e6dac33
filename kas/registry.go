package kas

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"slices"

	"kubetunnel/kas/identity"
	"kubetunnel/kasproxy"
)

// ErrUnknownToken is a token that matches no agent. The caller must not
// learn whether the agent it claims to be exists.
var ErrUnknownToken = errors.New("unknown token")

// ErrRegistryUnavailable is a registry that cannot answer now (GitLab is
// down): the agent is refused with 503 and retries.
var ErrRegistryUnavailable = errors.New("agent registry unavailable")

// Agent is an agent as the registry knows it.
type Agent = identity.Agent

// AgentRegistry answers "which agent owns this token?" and "who is the
// agent with this key?". The standalone registry reads the kas config;
// the GitLab one asks GitLab.
type AgentRegistry interface {
	AuthenticateAgent(ctx context.Context, token string) (Agent, error)
	// Agent returns an agent by key: any configured one (standalone), or
	// one that authenticated since kas started (GitLab).
	Agent(key string) (Agent, bool)
	// Agents lists the agents Agent knows, in a stable order.
	Agents() []Agent
}

// tokenEntry is one accepted token hash and who it belongs to.
type tokenEntry[T any] struct {
	hash  [sha256.Size]byte
	owner T
}

// tokenTable matches a token against every stored hash in constant time:
// the loop never stops early, so timing does not tell how many hashes
// exist or which one matched.
type tokenTable[T any] struct {
	entries []tokenEntry[T]
}

func (t *tokenTable[T]) add(hexHash string, owner T) {
	b, err := hex.DecodeString(hexHash)
	if err != nil || len(b) != sha256.Size {
		return // Validate has already refused it
	}
	t.entries = append(t.entries, tokenEntry[T]{hash: [sha256.Size]byte(b), owner: owner})
}

func (t *tokenTable[T]) lookup(token string) (T, bool) {
	sum := sha256.Sum256([]byte(token))
	var found T
	match := 0
	for i := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], t.entries[i].hash[:]) == 1 {
			found = t.entries[i].owner
			match = 1
		}
	}
	return found, match == 1
}

// staticRegistry is the standalone registry from the kas config file.
type staticRegistry struct {
	tokens tokenTable[Agent]
	agents []Agent // in config order
}

var _ AgentRegistry = (*staticRegistry)(nil)

func newStaticRegistry(cfg *Config) *staticRegistry {
	r := &staticRegistry{}
	for _, e := range cfg.Agents {
		a := Agent{Key: e.Name, Name: e.Name, ConfigProject: e.ConfigProject, Projects: e.Projects}
		r.agents = append(r.agents, a)
		for _, h := range e.TokenSHA256 {
			r.tokens.add(h, a)
		}
	}
	return r
}

func (r *staticRegistry) Agent(key string) (Agent, bool) {
	for _, a := range r.agents {
		if a.Key == key {
			return a, true
		}
	}
	return Agent{}, false
}

func (r *staticRegistry) Agents() []Agent { return slices.Clone(r.agents) }

func (r *staticRegistry) AuthenticateAgent(_ context.Context, token string) (Agent, error) {
	a, ok := r.tokens.lookup(token)
	if !ok {
		return Agent{}, ErrUnknownToken
	}
	return a, nil
}

// HashToken is how a token is stored: lowercase hex SHA-256.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// userRegistry authenticates callers of the Kubernetes API proxy from
// users[] in the kas config.
type userRegistry struct {
	tokens tokenTable[kasproxy.User]
}

var _ kasproxy.Authenticator = (*userRegistry)(nil)

func newUserRegistry(cfg *Config) *userRegistry {
	r := &userRegistry{}
	for _, u := range cfg.Users {
		for _, h := range u.TokenSHA256 {
			r.tokens.add(h, kasproxy.User{Name: u.Name, Groups: u.Groups, Agents: u.Agents})
		}
	}
	return r
}

func (r *userRegistry) AuthenticateUser(_ context.Context, token string) (kasproxy.User, error) {
	u, ok := r.tokens.lookup(token)
	if !ok {
		return kasproxy.User{}, kasproxy.ErrUnauthenticated
	}
	return u, nil
}
