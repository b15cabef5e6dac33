package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rancher/remotedialer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
)

// Side by side on the real kube-apiserver, in one run: straight to it,
// through rancher/remotedialer (its server holds the cluster's token and
// speaks TLS to the API server through the tunnel, as Rancher does), and
// through kas+agentk on tunnel protocol 1 (HTTP/1.1 on the streams) and
// protocol 2 (tunnel/wire head frames). Both kas front doors and
// remotedialer's are plain HTTP; each kas has its own agentk, the
// protocol-1 one offering only protocol 1 as an agentk from before
// protocol 2 does.
//
//	go -C test test -run '^$' -bench '^BenchmarkRealAPIPaths$' -benchtime 1x ./bench
//
// Reported per path: small GET p50 (median over rounds of sequential GETs,
// the paths taking turns request by request), added p50 over direct,
// process CPU per GET (client and the proxy's two ends; blocks of GETs per
// path, taking turns), and a ~1 MB list (20 × 50 KB ConfigMaps) in MB/s
// and as a share of direct.
func BenchmarkRealAPIPaths(b *testing.B) {
	e := sharedProxyEnv(b)
	ts, err := e.realAPITargets()
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range ts {
		warmUp(b, e, t)
	}
	const rounds, gets, cpuBlock = 3, 1000, 300
	p50 := make([][]time.Duration, len(ts))
	for round := range rounds {
		lats := make([]latencies, len(ts))
		for n := range gets {
			for k := range ts {
				i := (k + n + round) % len(ts) // each path goes first in turn
				start := time.Now()
				e.mustGet(b, ts[i], smallObject, nil)
				lats[i].add(time.Since(start))
			}
		}
		for i := range ts {
			p50[i] = append(p50[i], lats[i].percentile(50))
		}
	}
	cpu := make([][]time.Duration, len(ts))
	for round := range rounds {
		for k := range ts {
			i := (k + round) % len(ts)
			before := cpuTime()
			for range cpuBlock {
				e.mustGet(b, ts[i], smallObject, nil)
			}
			cpu[i] = append(cpu[i], (cpuTime()-before)/cpuBlock)
		}
	}
	ns, err := createSmallListObjects(e)
	if err != nil {
		b.Fatal(err)
	}
	listPath := "/api/v1/namespaces/" + ns + "/configmaps"
	for _, t := range ts {
		e.mustGet(b, t, listPath, identity)
	}
	const lists = 30
	listTime := make([]time.Duration, len(ts))
	listBytes := make([]int64, len(ts))
	for n := range lists {
		for k := range ts {
			i := (k + n) % len(ts)
			start := time.Now()
			listBytes[i] += e.mustGet(b, ts[i], listPath, identity)
			listTime[i] += time.Since(start)
		}
	}
	median := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	directP50 := median(p50[0])
	directMBps := float64(listBytes[0]) / listTime[0].Seconds() / 1e6
	for i, t := range ts {
		mbps := float64(listBytes[i]) / listTime[i].Seconds() / 1e6
		b.Run(t.name, func(b *testing.B) {
			for b.Loop() {
			}
			b.ReportMetric(float64(median(p50[i]))/1e3, "p50-us")
			b.ReportMetric(float64(median(p50[i])-directP50)/1e3, "added-p50-us")
			b.ReportMetric(float64(median(cpu[i]))/1e3, "cpu-us/get")
			b.ReportMetric(mbps, "list-MB/s")
			b.ReportMetric(100*mbps/directMBps, "list-%direct")
			b.ReportMetric(float64(listBytes[i]/lists), "list-bytes")
		})
	}
}

// realAPITargets starts what the comparison needs besides the shared
// environment (whose kas and agentk speak protocol 2): remotedialer in
// front of the API server, and a second kas with an agentk that offers
// protocol 1 only.
func (e *proxyEnv) realAPITargets() ([]target, error) {
	rdURL, err := startRemotedialerAPI(e)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-kas-p1-")
	if err != nil {
		return nil, err
	}
	k1, err := startKas(kasConfig(dir, os.Getenv(tunnelEnv) != "grpc"))
	if err != nil {
		return nil, err
	}
	a1, err := startAgentkWith(k1.agentURL(), &rest.Config{
		Host: e.cp.URL, BearerToken: agentkAPIToken, TLSClientConfig: rest.TLSClientConfig{CAData: e.cp.CAData},
	}, func(o *agentk.Options) { o.ProxyProtocol = 1 })
	if err != nil {
		return nil, err
	}
	stopAtEnd(func() error {
		a1.stop()
		return errors.Join(k1.stop(), os.RemoveAll(dir))
	})
	c1 := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, err := e.get(c1, k1.proxyURL()+smallObject, nil)
		if err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no request through the protocol-1 kas within 30s: %d %v", status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rd := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	return []target{
		{"direct", e.direct, e.directURL},
		{"remotedialer", rd, rdURL},
		{"kas-protocol1", c1, k1.proxyURL()},
		{"kas-protocol2", e.viaKas, e.kasURL},
	}, nil
}

// rdServer is Rancher's setup on the server side: the remotedialer
// server takes its agent on /connect, and a reverse proxy that holds the
// cluster's token talks TLS to the API server over a connection the agent
// (remotedialer client) dials for it.
type rdServer struct {
	rd    *remotedialer.Server
	tr    *http.Transport // the proxy's, to the API server through the agent
	proxy http.Handler    // API requests only
	mux   http.Handler    // /connect and API requests
}

func newRDServer(api *url.URL, pool *x509.CertPool) *rdServer {
	rd := remotedialer.New(func(r *http.Request) (string, bool, error) {
		id := r.Header.Get("X-Tunnel-ID")
		return id, id == rdClientKey, nil
	}, remotedialer.DefaultErrorWriter)
	dial := rd.Dialer(rdClientKey)
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, "tcp", api.Host) },
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(api)
			pr.Out.Header.Set("Authorization", "Bearer "+agentkAPIToken)
		},
		Transport:     tr,
		FlushInterval: -1,
	}
	mux := http.NewServeMux()
	mux.Handle("/connect", rd)
	mux.Handle("/", rp)
	return &rdServer{rd: rd, tr: tr, proxy: rp, mux: mux}
}

// startRemotedialerAPI runs an rdServer and its agent in this process.
func startRemotedialerAPI(e *proxyEnv) (string, error) {
	api, err := url.Parse(e.cp.URL)
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.cp.CAData)
	rs := newRDServer(api, pool)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: rs.mux}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = remotedialer.ClientConnectWithOpts(ctx, "ws://"+ln.Addr().String()+"/connect", http.Header{"X-Tunnel-ID": {rdClientKey}}, nil,
			func(string, string) bool { return true }, nil, &remotedialer.ConnectOpts{Backoff: remotedialer.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}})
	}()
	stopAtEnd(func() error {
		rs.tr.CloseIdleConnections()
		cancel()
		srv.Close()
		<-done
		return nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for !rs.rd.HasSession(rdClientKey) {
		if time.Now().After(deadline) {
			return "", errors.New("remotedialer client did not connect within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "http://" + ln.Addr().String(), nil
}

// createSmallListObjects makes 20 ConfigMaps of ~50 KB: a ~1 MB list.
func createSmallListObjects(e *proxyEnv) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := e.cp.CreateNamespace(ctx, "bench-list-1mb")
	if err != nil {
		return "", err
	}
	for i := range 20 {
		raw := make([]byte, 50_000*3/4)
		rand.Read(raw)
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("small-%d", i)},
			Data:       map[string]string{"blob": base64.StdEncoding.EncodeToString(raw)},
		}
		if _, err := e.cp.Clientset().CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("create %s: %w", cm.Name, err)
		}
	}
	return ns, nil
}
