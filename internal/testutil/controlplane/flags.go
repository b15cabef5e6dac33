package controlplane

import (
	"fmt"
	"path/filepath"
	"strings"
)

func etcdArgs(dataDir string, clientPort, peerPort int) []string {
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	return []string{
		"--name=default",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		// The data is thrown away after the test; fsync only costs time.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}
}

func apiserverArgs(dir, address string, etcdClientPort, securePort int, extra []string) []string {
	saKey := filepath.Join(dir, "sa.key")
	args := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdClientPort),
		fmt.Sprintf("--secure-port=%d", securePort),
		"--bind-address=" + address,
		"--advertise-address=" + address,
		// The apiserver generates a self-signed serving certificate for
		// the address here; its file doubles as the CA bundle for clients.
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		// The lease reconciler refuses a loopback advertise address, and with
		// no pods behind it the kubernetes Service needs no endpoints.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	// A flag in extra replaces the default of that name (list flags such
	// as --authorization-mode would otherwise add up).
	given := map[string]bool{}
	for _, a := range extra {
		name, _, _ := strings.Cut(a, "=")
		given[name] = true
	}
	out := make([]string, 0, len(args)+len(extra))
	for _, a := range args {
		if name, _, _ := strings.Cut(a, "="); !given[name] {
			out = append(out, a)
		}
	}
	return append(out, extra...)
}
