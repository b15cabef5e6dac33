package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"kubetunnel/kas"
)

const agentsUsage = `Usage:
  kas agents [flags]                 every agent: connections, agentk version, config, syncs
  kas agents describe NAME [flags]   one agent in full

It reads GET /api/v1/status from a running kas's observability listener.

Flags:
`

// agentsCmd lists the agents a running kas knows, from its status API.
func agentsCmd(args []string, stdout, stderr io.Writer) int {
	describe := ""
	if len(args) >= 1 && args[0] == "describe" {
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			fmt.Fprintln(stderr, "kas agents describe: give the agent's name: kas agents describe NAME")
			return 2
		}
		describe, args = args[1], args[2:]
	}
	fs := flag.NewFlagSet("kas agents", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "kas's observability URL, e.g. http://127.0.0.1:8151 (default: observability.listen of --config, else http://"+kas.DefaultObservabilityListen+")")
	configFile := fs.String("config", "", "kas config file to take observability.listen from")
	tokenFile := fs.String("token-file", "", "file with a users[] token (needed unless observability.status.public is true); or set KAS_TOKEN")
	output := fs.String("o", "table", "output: table or json")
	fs.Usage = func() {
		fmt.Fprint(stderr, agentsUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "kas agents: -o %q: want table or json\n", *output)
		return 2
	}
	base := *server
	if base == "" {
		addr := kas.DefaultObservabilityListen
		if *configFile != "" {
			cfg, err := kas.LoadConfig(*configFile)
			if err != nil {
				fmt.Fprintf(stderr, "kas agents: %v\n", err)
				return 1
			}
			addr = cfg.Observability.Listen.Address
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			fmt.Fprintf(stderr, "kas agents: observability.listen.address %q: %v\n", addr, err)
			return 1
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		scheme := "http"
		if *configFile != "" {
			if cfg, _ := kas.LoadConfig(*configFile); cfg != nil && cfg.Observability.Listen.CertificateFile != "" {
				scheme = "https"
			}
		}
		base = scheme + "://" + net.JoinHostPort(host, port)
	}
	base = strings.TrimSuffix(base, "/")
	token := os.Getenv("KAS_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "kas agents: --token-file: %v\n", err)
			return 1
		}
		token = strings.TrimSpace(string(b))
	}
	rep, err := fetchStatus(base, token)
	if err != nil {
		fmt.Fprintf(stderr, "kas agents: %v\n", err)
		return 1
	}
	if describe != "" {
		i := slices.IndexFunc(rep.Agents, func(a kas.StatusPageAgent) bool { return a.Name == describe })
		if i < 0 {
			who := ""
			if rep.User != "" {
				who = " that " + rep.User + " may see"
			}
			fmt.Fprintf(stderr, "kas agents describe: kas at %s has no agent %q%s\n", base, describe, who)
			return 1
		}
		if *output == "json" {
			return writeJSONOut(stdout, rep.Agents[i])
		}
		describeAgent(stdout, rep.Agents[i], rep.GeneratedAt)
		return 0
	}
	if *output == "json" {
		return writeJSONOut(stdout, rep)
	}
	agentsTable(stdout, rep)
	return 0
}

func fetchStatus(base, token string) (*kas.StatusReport, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/status", nil)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", base, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach kas at %s: %w (is kas running? --server takes the URL of its observability.listen)", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading kas's answer from %s: %w", base, err)
	}
	var apiErr struct {
		Error string `json:"error"`
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		_ = json.Unmarshal(body, &apiErr)
		hint := "pass --token-file with a users[] token"
		if token != "" {
			hint = "the token given is not one of users[].token_sha256"
		}
		return nil, fmt.Errorf("kas at %s answered 401 (%s): %s", base, apiErr.Error, hint)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s/api/v1/status answered 404: is --server kas's observability listener (not the agent or Kubernetes API listener), and kas this version or newer?", base)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("kas at %s answered %s: %s", base, resp.Status, strings.TrimSpace(string(body)))
	}
	var rep kas.StatusReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return nil, fmt.Errorf("kas at %s answered something that is not its status: %w", base, err)
	}
	return &rep, nil
}

func writeJSONOut(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Hour).String()
	}
}

func agentsTable(w io.Writer, rep *kas.StatusReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCONNECTIONS\tAGENTK\tCONNECTED\tCONFIG\tSYNC")
	for _, a := range rep.Agents {
		var versions []string
		since := time.Time{}
		for _, s := range a.Sessions {
			if !slices.Contains(versions, s.AgentkVersion) {
				versions = append(versions, s.AgentkVersion)
			}
			if since.IsZero() || s.ConnectedSince.Before(since) {
				since = s.ConnectedSince
			}
		}
		ver := strings.Join(versions, ",")
		if ver == "" {
			ver = "-"
		}
		connected := "-"
		if len(a.Sessions) > 0 {
			connected = age(rep.GeneratedAt, since)
		}
		config := shortCommit(a.ConfigCommit)
		if a.ConfigError != "" {
			config = "error"
		} else if config == "" {
			config = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", a.Name, len(a.Sessions), ver, connected, config, syncSummary(a))
	}
	tw.Flush()
}

// syncSummary is "2/2 synced", "1/2 failed" or "-".
func syncSummary(a kas.StatusPageAgent) string {
	if len(a.Projects) == 0 {
		return "-"
	}
	synced, failed := 0, 0
	for _, p := range a.Projects {
		if p.LastSync == nil {
			continue
		}
		if p.LastSync.Result == "synced" {
			synced++
		} else {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Sprintf("%d/%d failed", failed, len(a.Projects))
	}
	return fmt.Sprintf("%d/%d synced", synced, len(a.Projects))
}

func describeAgent(w io.Writer, a kas.StatusPageAgent, now time.Time) {
	fmt.Fprintf(w, "Name:            %s\n", a.Name)
	fmt.Fprintf(w, "Config project:  %s\n", a.ConfigProject)
	fmt.Fprintf(w, "Config commit:   %s\n", a.ConfigCommit)
	if a.ConfigError != "" {
		fmt.Fprintf(w, "Config error:    %s\n", a.ConfigError)
	}
	if len(a.ConfigIgnoredKeys) > 0 {
		fmt.Fprintf(w, "Ignored keys:    %s\n", strings.Join(a.ConfigIgnoredKeys, ", "))
	}
	fmt.Fprintf(w, "Connections:     %d\n", len(a.Sessions))
	for _, s := range a.Sessions {
		d := ""
		if s.Draining {
			d = "  (draining)"
		}
		fmt.Fprintf(w, "  agentk %s from %s, connected %s (%s ago)%s\n", s.AgentkVersion, s.Remote,
			s.ConnectedSince.UTC().Format(time.RFC3339), age(now, s.ConnectedSince), d)
	}
	fmt.Fprintf(w, "Manifest projects: %d\n", len(a.Projects))
	for _, p := range a.Projects {
		fmt.Fprintf(w, "  %s\n", p.ID)
		fmt.Fprintf(w, "    sent commit:   %s\n", p.SentCommit)
		if p.Error != "" {
			fmt.Fprintf(w, "    error:         %s\n", p.Error)
		}
		if s := p.LastSync; s != nil {
			fmt.Fprintf(w, "    last sync:     %s of %s, %s ago\n", s.Result, s.CommitID, age(now, s.ReportedAt))
			if s.Reason != "" {
				fmt.Fprintf(w, "    reason:        %s\n", s.Reason)
			}
			fmt.Fprintf(w, "    objects:       %d applied, %d pruned, %d unchanged\n", s.Applied, s.Pruned, s.Unchanged)
			if s.Health != "" {
				fmt.Fprintf(w, "    health:        %s\n", s.Health)
			}
		} else {
			fmt.Fprintf(w, "    last sync:     none reported yet\n")
		}
	}
}
