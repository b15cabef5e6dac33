package kas

import (
	"context"
	"strconv"
	"time"

	"kubetunnel/internal/gitlab"
	"kubetunnel/kas/sessions"
)

// revalidatePeriod is how often the tokens of connected agents are asked
// about again: a quarter of info_cache_ttl. Answers come from the GitLab
// client's cache until they expire, so GitLab sees at most one agent_info
// per token per info_cache_ttl (as for new connections), and a token
// GitLab refuses closes its agent's connections within about
// info_cache_ttl + this period.
func revalidatePeriod(cfg *Config) time.Duration {
	return max(cfg.Agent.InfoCacheTTL/4, 100*time.Millisecond)
}

// agentSessions is what revalidate needs of the session registry.
type agentSessions interface {
	Agents() []string
	Revoke(agent, reason string) int
}

var _ agentSessions = (*sessions.Registry)(nil)

// revalidate asks GitLab again, every period, about the tokens of the
// agents connected here. When GitLab refuses one (401/403/404: revoked,
// or the agent deleted), every connection of that agent to this kas is
// closed: kas cannot tell which connection used which token, and agentk
// replicas holding a token GitLab still accepts reconnect at once. GitLab
// being unreachable closes nothing, and neither does a refusal while
// GitLab does not accept kas's own JWT (a wrong or rotated
// gitlab.authentication_secret_file would otherwise look like every
// token revoked).
func (r *gitlabRegistry) revalidate(ctx context.Context, period time.Duration, sessions agentSessions) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r.revalidateOnce(ctx, sessions)
	}
}

func (r *gitlabRegistry) revalidateOnce(ctx context.Context, sessions agentSessions) {
	var jwtChecked bool
	var jwtErr error
	for _, key := range sessions.Agents() {
		var refused []string
		for _, tok := range r.tokensOf(key) {
			res, err := r.client.GetAgentInfo(ctx, tok)
			if gitlab.IsRefusal(err) || (err == nil && strconv.FormatInt(int64(res.AgentID), 10) != key) {
				refused = append(refused, tok)
			}
		}
		// A token the manifest path found refused (project_info 401) was
		// forgotten there: it counts too.
		if !r.takeRefused(key) && len(refused) == 0 {
			continue
		}
		a, _ := r.Agent(key)
		if a.Key == "" {
			a = Agent{Key: key, Name: key}
		}
		if !jwtChecked {
			jwtChecked, jwtErr = true, r.client.ProbeJWT(ctx)
		}
		if jwtErr != nil {
			r.logger.Warn("GitLab refuses a token of a connected agent, but kas cannot confirm that GitLab accepts its own JWT: keeping the agent's connections", append(a.LogAttrs(), "err", jwtErr)...)
			r.markRefused(key)
			continue
		}
		for _, tok := range refused {
			r.forget(key, tok)
		}
		r.takeRefused(key)
		n := sessions.Revoke(key, "GitLab no longer accepts a token of this agent")
		r.logger.Warn("GitLab no longer accepts a token of this agent: closing its connections to this kas (agentk replicas with a token GitLab accepts reconnect)", append(a.LogAttrs(), "connections", n)...)
	}
}
