package kas

import (
	"fmt"
	"strings"
)

// validateIdentities refuses configs in which one token could mean two
// identities, or a user name the API server reserves:
//   - a token hash listed twice (two agents, two users, or an agent and a
//     user): the last match would win, so one party could act as another;
//   - a users[].name starting with "system:": with access_as user, agentk
//     would impersonate a Kubernetes system identity.
func (c *Config) validateIdentities(bad func(key, format string, args ...any)) {
	seen := map[string]string{} // hash → the key that first listed it
	note := func(key string, hashes []string) {
		for j, h := range hashes {
			k := fmt.Sprintf("%s[%d]", key, j)
			if first, ok := seen[h]; ok {
				bad(k, "the same token hash as %s: every agent and user needs a token of its own", first)
				continue
			}
			seen[h] = k
		}
	}
	for i, a := range c.Agents {
		note(fmt.Sprintf("agents[%d].token_sha256", i), a.TokenSHA256)
	}
	for i, u := range c.Users {
		note(fmt.Sprintf("users[%d].token_sha256", i), u.TokenSHA256)
		if strings.HasPrefix(strings.ToLower(u.Name), "system:") {
			bad(fmt.Sprintf("users[%d].name", i), "%q: names starting with system: are reserved for Kubernetes' own identities", u.Name)
		}
	}
}
