package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"kubetunnel/kas"
)

// tokenCreate prints a new random token and the hash to put in the config.
// Only the hash is ever stored; the token is shown this once (or written
// to --output, readable by its owner only).
func tokenCreate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kas token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agent := fs.String("agent", "", "name of the agent the token is for (agents[] in the kas config)")
	user := fs.String("user", "", "name of the caller the token is for (users[] in the kas config: kubectl through kas)")
	output := fs.String("output", "", "write the token to this new file (mode 0600) instead of printing it")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: kas token create (--agent NAME | --user NAME) [--output FILE]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if (*agent == "") == (*user == "") {
		fmt.Fprintln(stderr, "kas token create: give --agent NAME (a token for agentk) or --user NAME (a token for kubectl through kas), one of them")
		return 2
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		fmt.Fprintf(stderr, "kas token create: %v\n", err)
		return 1
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	name, use := *agent, "give it to agentk with --token-file"
	if *user != "" {
		name, use = *user, "kas kubeconfig --token-file puts it in a kubeconfig"
	}
	if *output != "" {
		// O_EXCL: never overwrite a token someone may still be using.
		f, err := os.OpenFile(*output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "kas token create: --output: %v\n", err)
			return 1
		}
		_, werr := f.WriteString(token + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(*output)
			fmt.Fprintf(stderr, "kas token create: --output: %v\n", werr)
			return 1
		}
		fmt.Fprintf(stdout, "Token for %s written to %s (mode 0600; %s).\n\n", name, *output, use)
	} else {
		fmt.Fprintf(stdout, "Token for %s (shown once; %s):\n%s\n\n", name, use, token)
	}
	if *user != "" {
		fmt.Fprintf(stdout, "Add to the kas config:\nusers:\n  - name: %s\n    token_sha256: [%q]\n    agents: []   # the agents this user may reach\n", name, kas.HashToken(token))
		return 0
	}
	fmt.Fprintf(stdout, "Add to the kas config:\nagents:\n  - name: %s\n    token_sha256: [%q]\n", name, kas.HashToken(token))
	return 0
}
