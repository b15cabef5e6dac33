package check

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"kubetunnel/agentcfg"
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/kas"
)

// Run is `kas check`: it verifies a loaded config the way kas would use
// it, without serving: TLS key pairs load, every repository can be
// fetched, every agent's config.yaml parses and names known repositories,
// with redis: the replicas' secret and Redis (checkReplicas), and with
// gitlab: GitLab answers and accepts kas's JWT (checkGitLab). It writes one
// verdict line per item (and WARN lines, securityWarnings) to w and
// reports whether all passed.
func Run(ctx context.Context, cfg *kas.Config, w io.Writer) bool {
	ok := true
	verdict := func(item string, err error, detail string) {
		if err != nil {
			ok = false
			fmt.Fprintf(w, "FAIL  %s: %v\n", item, err)
			return
		}
		fmt.Fprintf(w, "ok    %s%s\n", item, detail)
	}
	fmt.Fprintf(w, "ok    config: %d repositories, %d agents, %d users\n", len(cfg.Repositories), len(cfg.Agents), len(cfg.Users))
	for _, l := range []struct {
		name string
		l    kas.Listen
	}{
		{"agent.listen", kas.Listen{Address: cfg.Agent.Listen.Address, CertificateFile: cfg.Agent.Listen.CertificateFile, KeyFile: cfg.Agent.Listen.KeyFile}},
		{"agent.kubernetes_api.listen", cfg.Agent.KubernetesAPI.Listen},
		{"observability.listen", cfg.Observability.Listen},
	} {
		if l.l.CertificateFile == "" {
			detail := " (plain HTTP)"
			if l.name == "agent.kubernetes_api.listen" {
				detail = " (plain HTTP: kubectl sends tokens only over TLS, so put a TLS proxy in front)"
			}
			verdict(l.name+" "+l.l.Address, nil, detail)
			continue
		}
		_, err := tls.LoadX509KeyPair(l.l.CertificateFile, l.l.KeyFile)
		verdict(l.name+" TLS", err, "")
	}
	if cfg.Redis != nil {
		checkReplicas(ctx, cfg, verdict)
	}
	if cfg.GitLab != nil {
		checkGitLab(ctx, cfg, verdict, w)
	}
	checkSecurity(cfg, w)
	repos, err := gitrepo.New(cfg.Git.CacheDir, cfg.Repositories, slog.New(slog.DiscardHandler))
	if err != nil {
		verdict("git cache "+cfg.Git.CacheDir, err, "")
		return false
	}
	defer repos.Close()
	fetched := map[string]bool{}
	for _, r := range cfg.Repositories {
		fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, err := repos.Fetch(fctx, r.ID)
		cancel()
		detail := ""
		if err == nil {
			fetched[r.ID] = true
			if c, rerr := repos.Resolve(r.ID, gitrepo.Ref{}); rerr == nil {
				detail = ", default branch at " + c[:min(12, len(c))]
			}
		}
		verdict(fmt.Sprintf("repository %s (%s)", r.ID, r.URL), err, detail)
	}
	for _, a := range cfg.Agents {
		item := "agent " + a.Name
		if len(a.TokenSHA256) == 0 {
			verdict(item, errors.New("no token_sha256: it can never connect (make one with: kas token create --agent "+a.Name+")"), "")
			continue
		}
		if a.ConfigProject == "" {
			verdict(item, nil, ": no config_project, runs with the default config")
			continue
		}
		if !fetched[a.ConfigProject] {
			verdict(item, fmt.Errorf("config project %q could not be fetched (above)", a.ConfigProject), "")
			continue
		}
		commit, err := repos.Resolve(a.ConfigProject, gitrepo.Ref{})
		if err != nil {
			verdict(item, err, "")
			continue
		}
		file := kas.AgentConfigPath(a.Name)
		data, err := repos.ReadFile(a.ConfigProject, commit, file)
		if errors.Is(err, gitrepo.ErrNotFound) {
			verdict(item, NearAgentDir(repos, a.ConfigProject, commit, a.Name), fmt.Sprintf(": no %s in %s, runs with the default config", file, a.ConfigProject))
			continue
		}
		if err != nil {
			verdict(item, err, "")
			continue
		}
		ac, err := agentcfg.ParseNamed(file, data, a.ConfigProject)
		if err == nil {
			for i, p := range ac.GitOps.ManifestProjects {
				if !repos.Has(p.ID) {
					err = fmt.Errorf("%s: gitops.manifest_projects[%d].id %q is not a repositories[].id of the kas config", file, i, p.ID)
					break
				}
			}
		}
		detail := ""
		if ac != nil {
			detail = fmt.Sprintf(": %s at %s, %d manifest projects", file, commit[:12], len(ac.GitOps.ManifestProjects))
		}
		verdict(item, err, detail)
		if err == nil {
			ManifestGlobs(repos, a.Name, file, ac, verdict)
		}
	}
	return ok
}
