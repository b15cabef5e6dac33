package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"

	"kubetunnel/kas"
)

// tokenCreate prints a new random token and the hash to put in the config.
// Only the hash is ever stored; the token is shown this once.
func tokenCreate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kas token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agent := fs.String("agent", "", "name of the agent (or user) the token is for")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *agent == "" {
		fmt.Fprintln(stderr, "kas token create: --agent is required")
		return 2
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		fmt.Fprintf(stderr, "kas token create: %v\n", err)
		return 1
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	fmt.Fprintf(stdout, "Token for %s (shown once; give it to agentk with --token-file):\n%s\n\n", *agent, token)
	fmt.Fprintf(stdout, "Add to the kas config:\nagents:\n  - name: %s\n    token_sha256: [%q]\n", *agent, kas.HashToken(token))
	return 0
}
