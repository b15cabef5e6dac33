package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// waitReady polls /readyz as admin until it answers 200, and returns the
// serving certificate that kube-apiserver generated in its cert dir. Polling
// verifies TLS with that certificate, so a ready result also proves that
// clients can trust CAData.
func waitReady(ctx context.Context, cp *ControlPlane, caFile string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()

	var caData []byte
	var client *http.Client
	lastErr := errors.New("not polled yet")
	for {
		for _, p := range []*process{cp.etcd, cp.apiserver} {
			if exited, err := p.exited(); exited {
				return nil, fmt.Errorf("%s exited early: %v", p.name, err)
			}
		}
		if client == nil {
			// The certificate is written before the port is bound.
			pool := x509.NewCertPool()
			if data, err := os.ReadFile(caFile); err != nil {
				lastErr = fmt.Errorf("serving certificate not written yet: %w", err)
			} else if !pool.AppendCertsFromPEM(data) {
				// Caught halfway through writing: read it again next tick.
				lastErr = fmt.Errorf("no complete certificate in %s yet", caFile)
			} else {
				caData = data
				client = &http.Client{
					Timeout:   5 * time.Second,
					Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
				}
				defer client.CloseIdleConnections()
			}
		}
		if client != nil {
			if lastErr = probeReadyz(ctx, client, cp.URL, cp.AdminToken); lastErr == nil {
				return caData, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kube-apiserver not ready after %s: %w", readyTimeout, lastErr)
		case <-tick.C:
		}
	}
}

func probeReadyz(ctx context.Context, client *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("build readyz request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("readyz: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s: %s", resp.Status, body)
	}
	return nil
}
