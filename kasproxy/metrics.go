package kasproxy

import (
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics.
type Metrics struct {
	Requests *prometheus.CounterVec   // code, verb
	Duration *prometheus.HistogramVec // verb
	Inflight prometheus.Gauge
	Bytes    *prometheus.CounterVec // direction: to_agent, from_agent
	// StalledBytes is what responses whose callers stopped reading are
	// charged now; StalledEnded counts those ended over the budget.
	StalledBytes prometheus.Gauge
	StalledEnded prometheus.Counter

	// The Bytes children, looked up once rather than per request, and
	// the Requests and Duration ones as they are first used: the label
	// lookup (hashing, locking, formatting the code) was most of the
	// metrics' cost per request.
	toAgent, fromAgent prometheus.Counter
	requests           sync.Map // requestKey → prometheus.Counter
	durations          map[string]prometheus.Observer
}

type requestKey struct {
	code int
	verb string
}

// NewMetrics registers the proxy metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_proxy_requests_total",
			Help: "Kubernetes API requests through kas, by HTTP status code and verb.",
		}, []string{"code", "verb"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kas_proxy_request_duration_seconds",
			Help:    "Time to serve a proxied request, until kas has written the whole response (watches included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"verb"}),
		Inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kas_proxy_inflight",
			Help: "Proxied requests in flight (watches and exec sessions included).",
		}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_proxy_bytes_total",
			Help: "Proxied body bytes, by direction (to_agent: request bodies; from_agent: responses).",
		}, []string{"direction"}),
	}
	m.StalledBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kas_proxy_stalled_response_bytes",
		Help: "Memory charged to proxied responses whose callers stopped reading (one tunnel stream window each), against limits.max_buffered_bytes.",
	})
	m.StalledEnded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kas_proxy_stalled_responses_ended_total",
		Help: "Proxied responses ended because their caller stopped reading and the caller's or kas's budget was spent.",
	})
	reg.MustRegister(m.Requests, m.Duration, m.Inflight, m.Bytes, m.StalledBytes, m.StalledEnded)
	m.toAgent, m.fromAgent = m.Bytes.WithLabelValues("to_agent"), m.Bytes.WithLabelValues("from_agent")
	m.durations = make(map[string]prometheus.Observer, len(Verbs))
	for _, v := range Verbs {
		m.durations[v] = m.Duration.WithLabelValues(v)
	}
	return m
}

func (m *Metrics) observe(verb string, code int, d time.Duration) {
	k := requestKey{code, verb}
	c, ok := m.requests.Load(k)
	if !ok {
		c, _ = m.requests.LoadOrStore(k, m.Requests.WithLabelValues(strconv.Itoa(code), verb))
	}
	c.(prometheus.Counter).Inc()
	o, ok := m.durations[verb]
	if !ok {
		o = m.Duration.WithLabelValues(verb)
	}
	o.Observe(d.Seconds())
}

// countingWriter counts response bytes while keeping the ResponseWriter's
// optional interfaces (Flusher, Hijacker) reachable through Unwrap, which
// http.ResponseController uses.
func (m *Metrics) countingWriter(w http.ResponseWriter) http.ResponseWriter {
	return &countingWriter{ResponseWriter: w, c: m.fromAgent}
}

type countingWriter struct {
	http.ResponseWriter
	c prometheus.Counter
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.c.Add(float64(n))
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (m *Metrics) countingBody(b io.ReadCloser) io.ReadCloser {
	return &countingBody{ReadCloser: b, c: m.toAgent}
}

type countingBody struct {
	io.ReadCloser
	c prometheus.Counter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.Add(float64(n))
	return n, err
}
