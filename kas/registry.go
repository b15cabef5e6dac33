package kas

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"slices"
	"sync/atomic"

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

// reloadableRegistry is a registry that a config reload updates (the
// standalone one); kas asks for what a registry does, not for its type.
type reloadableRegistry interface {
	AgentRegistry
	// update replaces the agents with cfg's agents[].
	update(cfg *Config)
	// hasToken reports whether agent key still accepts the token with
	// this SHA-256.
	hasToken(key string, sum [sha256.Size]byte) bool
}

var _ reloadableRegistry = (*staticRegistry)(nil)

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

// add stores a hash and reports whether it was one (Validate has
// already refused any other).
func (t *tokenTable[T]) add(hexHash string, owner T) bool {
	b, err := hex.DecodeString(hexHash)
	if err != nil || len(b) != sha256.Size {
		return false
	}
	t.entries = append(t.entries, tokenEntry[T]{hash: [sha256.Size]byte(b), owner: owner})
	return true
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
// A reload swaps its whole state at once, so an authentication sees either
// the old agents[] or the new, never a mix.
type staticRegistry struct {
	state atomic.Pointer[staticState]
}

type staticState struct {
	tokens tokenTable[Agent]
	agents []Agent // in config order
	// hashes are each agent's accepted token hashes, by key.
	hashes map[string][][sha256.Size]byte
}

var _ AgentRegistry = (*staticRegistry)(nil)

func newStaticRegistry(cfg *Config) *staticRegistry {
	r := &staticRegistry{}
	r.update(cfg)
	return r
}

// update replaces agents[] with cfg's.
func (r *staticRegistry) update(cfg *Config) {
	st := &staticState{hashes: map[string][][sha256.Size]byte{}}
	for _, e := range cfg.Agents {
		a := Agent{Key: e.Name, Name: e.Name, ConfigProject: e.ConfigProject, Projects: slices.Clone(e.Projects)}
		st.agents = append(st.agents, a)
		for _, h := range e.TokenSHA256 {
			if st.tokens.add(h, a) {
				st.hashes[a.Key] = append(st.hashes[a.Key], st.tokens.entries[len(st.tokens.entries)-1].hash)
			}
		}
	}
	r.state.Store(st)
}

// hasToken reports whether agent key still accepts the token with this
// SHA-256 (a reload may have removed it).
func (r *staticRegistry) hasToken(key string, sum [sha256.Size]byte) bool {
	match := 0
	for _, h := range r.state.Load().hashes[key] {
		match |= subtle.ConstantTimeCompare(sum[:], h[:])
	}
	return match == 1
}

func (r *staticRegistry) Agent(key string) (Agent, bool) {
	for _, a := range r.state.Load().agents {
		if a.Key == key {
			return a, true
		}
	}
	return Agent{}, false
}

func (r *staticRegistry) Agents() []Agent { return slices.Clone(r.state.Load().agents) }

func (r *staticRegistry) AuthenticateAgent(_ context.Context, token string) (Agent, error) {
	a, ok := r.state.Load().tokens.lookup(token)
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

// userRegistry authenticates callers of the Kubernetes API proxy (and of
// the status API) from users[] in the kas config. A reload swaps the table
// at once: a removed user's token is refused from the next request on.
type userRegistry struct {
	tokens atomic.Pointer[tokenTable[kasproxy.User]]
}

var _ kasproxy.Authenticator = (*userRegistry)(nil)

func newUserRegistry(cfg *Config) *userRegistry {
	r := &userRegistry{}
	r.update(cfg)
	return r
}

// update replaces users[] with cfg's.
func (r *userRegistry) update(cfg *Config) {
	t := &tokenTable[kasproxy.User]{}
	for _, u := range cfg.Users {
		for _, h := range u.TokenSHA256 {
			t.add(h, kasproxy.User{Name: u.Name, Groups: slices.Clone(u.Groups), Agents: slices.Clone(u.Agents)})
		}
	}
	r.tokens.Store(t)
}

func (r *userRegistry) AuthenticateUser(_ context.Context, token string) (kasproxy.User, error) {
	u, ok := r.tokens.Load().lookup(token)
	if !ok {
		return kasproxy.User{}, kasproxy.ErrUnauthenticated
	}
	return u, nil
}
