// Package build checks the container images' builds without a Docker
// engine. It reads the `go build` step out of Dockerfile.kas and
// Dockerfile.agentk and runs that same build, so the tests exercise the
// Dockerfiles' own flags and cannot drift from them. test/chart uses it to
// build the binaries it runs, the way the images do.
package build

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Step is the `go build` step of a Dockerfile.
type Step struct {
	// Dockerfile is the file the step was read from.
	Dockerfile string
	// Stage is the name of the stage holding the step (FROM … AS name).
	Stage string
	// Env holds KEY=value pairs in effect for the step: the stage's ENV
	// lines and assignments before `go` on the RUN line. Empty
	// assignments (GOOS=$TARGETOS outside a cross build) are left out.
	Env []string
	// Args are the arguments after `go build`, variables expanded.
	Args []string
	// Stages lists every stage of the Dockerfile in order.
	Stages []Stage
}

// Stage is one FROM section of a Dockerfile.
type Stage struct {
	Name string // after AS; may be empty
	From string // the image
	User string // the last USER directive; empty if none
	// CopiesFromBuild is true when the stage copies from the stage
	// holding the go build step.
	CopiesFromBuild bool
}

// ParseDockerfile reads the single `RUN … go build …` step of a
// Dockerfile, expanding ARG and ENV variables; version overrides the
// default of ARG VERSION as `docker build --build-arg VERSION=…` does.
func ParseDockerfile(path, version string) (*Step, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	instrs := instructions(string(data))
	var step *Step
	vars := map[string]string{}
	var env []string
	var stages []Stage
	for _, in := range instrs {
		keyword, rest, _ := strings.Cut(in, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(keyword) {
		case "FROM":
			words := strings.Fields(rest)
			st := Stage{}
			for i := 0; i < len(words); i++ {
				switch {
				case strings.HasPrefix(words[i], "--"):
				case strings.EqualFold(words[i], "AS") && i+1 < len(words):
					st.Name = words[i+1]
					i++
				case st.From == "":
					st.From = words[i]
				}
			}
			stages = append(stages, st)
			// Each stage starts with fresh variables and environment.
			vars = map[string]string{}
			env = nil
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			if name == "VERSION" {
				def = version
			}
			vars[name] = def
		case "ENV":
			words, err := shellWords(rest, vars)
			if err != nil {
				return nil, fmt.Errorf("%s: ENV %s: %w", path, rest, err)
			}
			for _, w := range words {
				k, v, ok := strings.Cut(w, "=")
				if !ok {
					return nil, fmt.Errorf("%s: ENV %s: use the KEY=value form", path, rest)
				}
				vars[k] = v
				env = append(env, k+"="+v)
			}
		case "USER":
			if len(stages) > 0 {
				stages[len(stages)-1].User = rest
			}
		case "COPY":
			if len(stages) > 0 && step != nil && strings.Contains(rest, "--from="+step.Stage+" ") {
				stages[len(stages)-1].CopiesFromBuild = true
			}
		case "RUN":
			if !strings.Contains(rest, "go build") {
				continue
			}
			if step != nil {
				return nil, fmt.Errorf("%s: more than one go build step", path)
			}
			s, err := parseRun(rest, vars)
			if err != nil {
				return nil, fmt.Errorf("%s: RUN %s: %w", path, rest, err)
			}
			s.Dockerfile = path
			s.Env = append(env, s.Env...)
			if len(stages) > 0 {
				s.Stage = stages[len(stages)-1].Name
			}
			step = s
		}
	}
	if step == nil {
		return nil, fmt.Errorf("%s: no RUN … go build step", path)
	}
	step.Stages = stages
	return step, nil
}

// parseRun splits a RUN command of the form
// [--mount=…] [KEY=value…] go build ARGS…
func parseRun(cmd string, vars map[string]string) (*Step, error) {
	words, err := shellWords(cmd, vars)
	if err != nil {
		return nil, err
	}
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		words = words[1:] // RUN flags such as --mount
	}
	s := &Step{}
	for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
		if k, v, _ := strings.Cut(words[0], "="); v != "" {
			s.Env = append(s.Env, k+"="+v)
		}
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		return nil, errors.New("want [--mount=…] [KEY=value…] go build ARGS, a single command")
	}
	for _, w := range words[2:] {
		if w == "&&" || w == ";" || w == "|" {
			return nil, errors.New("the go build step must be a single command")
		}
	}
	s.Args = words[2:]
	return s, nil
}

// instructions returns the Dockerfile's instructions, continuation lines
// joined and comments dropped.
func instructions(text string) []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// shellWords splits s like a POSIX shell: quotes, backslashes, and $VAR
// and ${VAR} expanded from vars outside single quotes.
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == '$' && i+1 < len(s):
			name, n := varName(s[i+1:])
			if n == 0 {
				cur.WriteByte(c)
			} else {
				cur.WriteString(vars[name])
				i += n
			}
			inWord = true
		case quote == '"':
			if c == '"' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// varName reads a variable reference after '$': NAME or {NAME}; it returns
// the name and how many bytes it used.
func varName(s string) (string, int) {
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", 0
		}
		return s[1:end], end + 1
	}
	n := 0
	for n < len(s) && (s[n] == '_' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= 'a' && s[n] <= 'z' || n > 0 && s[n] >= '0' && s[n] <= '9') {
		n++
	}
	return s[:n], n
}

// Flag returns the value of a go build flag given as -name=value or
// -name value (either dash count), and whether it is present. A boolean
// flag's value is "true".
func (s *Step) Flag(name string) (string, bool) {
	for i, a := range s.Args {
		a2 := strings.TrimLeft(a, "-")
		if a2 == a {
			continue
		}
		if k, v, ok := strings.Cut(a2, "="); ok && k == name {
			return v, true
		}
		if a2 == name {
			if isBoolFlag(name) || i+1 >= len(s.Args) {
				return "true", true
			}
			return s.Args[i+1], true
		}
	}
	return "", false
}

// Getenv returns the value the step's environment gives key.
func (s *Step) Getenv(key string) string {
	v := ""
	for _, kv := range s.Env {
		if k, val, _ := strings.Cut(kv, "="); k == key {
			v = val
		}
	}
	return v
}

func isBoolFlag(name string) bool {
	switch name {
	case "trimpath", "a", "race", "msan", "asan", "v", "x", "n", "work", "linkshared", "cover":
		return true
	}
	return false
}

// Build runs the step's go build in root (the build context: the
// Dockerfiles COPY the whole repository), writing the binary to out
// instead of the image path. The go command comes from PATH.
func (s *Step) Build(ctx context.Context, root, out string) error {
	args := []string{"build"}
	replaced := false
	for i := 0; i < len(s.Args); i++ {
		a := s.Args[i]
		switch {
		case a == "-o" || a == "--o":
			args = append(args, "-o", out)
			i++
			replaced = true
		case strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--o="):
			args = append(args, "-o", out)
			replaced = true
		default:
			args = append(args, a)
		}
	}
	if !replaced {
		return fmt.Errorf("%s: the go build step has no -o", s.Dockerfile)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), s.Env...)
	if combined, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s (from %s): %w\n%s", strings.Join(cmd.Args, " "), filepath.Base(s.Dockerfile), err, combined)
	}
	return nil
}

// Binary builds cmd/<name> as Dockerfile.<name> in root builds it, with the
// given version, into dir/<name>, and returns its path.
func Binary(ctx context.Context, root, dir, name, version string) (string, error) {
	step, err := ParseDockerfile(filepath.Join(root, "Dockerfile."+name), version)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	if err := step.Build(ctx, root, out); err != nil {
		return "", err
	}
	return out, nil
}
