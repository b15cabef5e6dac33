package kasproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// TestForwardAsReverseProxy sends the same requests through forward and
// through httputil.ReverseProxy (what kas used for every request before,
// and still uses for upgrades) and checks that the agent gets the same
// request and the caller the same answer: headers dropped or added each
// way, the query clean-up, bodies and trailers.
func TestForwardAsReverseProxy(t *testing.T) {
	type exchange struct {
		method, target string
		header         http.Header
		body           string
		// the agent's answer
		status            int
		respHeader        http.Header
		respBody          string
		length            int64 // -1: unknown
		trailer           http.Header
		undeclaredTrailer bool // a trailer the head did not announce
		// set on the caller's answer before kas proxies (CORS headers)
		preset http.Header
	}
	cases := map[string]exchange{
		"get with every kind of header": {
			method: http.MethodGet, target: "/api/v1/namespaces/default/pods?limit=500",
			header: http.Header{
				"Accept":              {"application/json"},
				"Connection":          {"keep-alive, X-Hop-Custom"},
				"X-Hop-Custom":        {"x"},
				"Keep-Alive":          {"timeout=5"},
				"Te":                  {"trailers, deflate"},
				"Proxy-Authorization": {"Basic eA=="},
				"X-Forwarded-For":     {"203.0.113.9"},
				"X-Forwarded-Host":    {"evil"},
				"X-Forwarded-Proto":   {"https"},
				"Forwarded":           {"for=203.0.113.9"},
				"Impersonate-User":    {"mallory"},
				"Kas-Proxy-User":      {"mallory"},
				"Cookie":              {"a=b"},
				"Expect":              {"100-continue"},
				"X-Remote-User":       {"mallory"},
				"Kubectl-Command":     {"kubectl get"},
			},
			status: http.StatusOK, respHeader: http.Header{
				"Content-Type": {"application/json"}, "Audit-Id": {"1"},
				"Connection": {"X-Resp-Hop"}, "X-Resp-Hop": {"y"}, "Keep-Alive": {"timeout=5"},
			},
			respBody: `{"kind":"PodList"}`, length: 18,
		},
		"user agent passes": {
			method: http.MethodGet, target: "/version", header: http.Header{"User-Agent": {"kubectl/v1.34"}},
			status: http.StatusOK, respBody: "{}", length: 2,
		},
		"query with a semicolon": {
			method: http.MethodGet, target: "/api/v1/pods?labelSelector=a%3Db;watch=true&x=1",
			status: http.StatusOK, respBody: "{}", length: 2,
		},
		"query with a broken escape": {
			method: http.MethodGet, target: "/api/v1/pods?a=%zz&b=1",
			status: http.StatusOK, respBody: "{}", length: 2,
		},
		"create with a body": {
			method: http.MethodPost, target: "/api/v1/namespaces/default/configmaps",
			header: http.Header{"Content-Type": {"application/json"}}, body: `{"kind":"ConfigMap"}`,
			status: http.StatusCreated, respBody: `{"kind":"ConfigMap"}`, length: 20,
		},
		"watch of unknown length": {
			method: http.MethodGet, target: "/api/v1/pods?watch=true",
			status: http.StatusOK, respHeader: http.Header{"Content-Type": {"application/json"}},
			respBody: `{"type":"ADDED"}` + "\n", length: -1,
		},
		"trailers": {
			method: http.MethodGet, target: "/x",
			status: http.StatusOK, respBody: "abc", length: -1,
			trailer: http.Header{"X-Checksum": {"1"}},
		},
		"undeclared trailer": {
			method: http.MethodGet, target: "/x",
			status: http.StatusOK, respBody: "abc", length: -1,
			trailer: http.Header{"X-Late": {"2"}}, undeclaredTrailer: true,
		},
		"header kas set before": {
			method: http.MethodGet, target: "/version", preset: http.Header{"Vary": {"Origin"}},
			status: http.StatusOK, respHeader: http.Header{"Vary": {"Accept"}}, respBody: "{}", length: 2,
		},
		"error answer": {
			method: http.MethodDelete, target: "/api/v1/namespaces/kube-system",
			status: http.StatusForbidden, respHeader: http.Header{"Content-Type": {"application/json"}},
			respBody: `{"kind":"Status"}`, length: 17,
		},
	}
	type seen struct {
		method, url, host string
		header            http.Header
		body              string
		length            int64
	}
	type answer struct {
		status          int
		header, trailer http.Header
		body            string
	}
	run := func(t *testing.T, c exchange, viaReverseProxy bool) (seen, answer) {
		var got seen
		p := New(Config{Users: fakeUsers{}})
		rt := RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
			got = seen{r.Method, r.URL.String(), r.Host, r.Header.Clone(), "<nil>", r.ContentLength}
			if r.Body != nil {
				b, _ := io.ReadAll(r.Body)
				got.body = string(b)
			}
			resp := &http.Response{StatusCode: c.status, Header: c.respHeader.Clone(), ContentLength: c.length,
				Body: io.NopCloser(strings.NewReader(c.respBody)), Request: r}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			if c.trailer != nil {
				tb := &trailerBody{Reader: strings.NewReader(c.respBody), resp: resp, trailer: c.trailer}
				if !c.undeclaredTrailer {
					resp.Trailer = http.Header{}
					for k := range c.trailer {
						resp.Trailer[k] = nil
					}
				}
				resp.Body = tb
			}
			return resp, nil
		})
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		r := httptest.NewRequest(c.method, "/agents/prod"+c.target, body)
		for k, v := range c.header {
			r.Header[k] = v
		}
		u := User{Name: "alice", Groups: []string{"dev", "ops"}, Agents: []string{"prod"}}
		ri := &reqInfo{user: &u, agent: "prod", rest: strings.SplitN(strings.TrimPrefix(r.URL.Path, "/agents/prod"), "?", 2)[0],
			verb: Verb(r), rt: rt}
		w := httptest.NewRecorder()
		for k, v := range c.preset {
			w.Header()[k] = append([]string(nil), v...)
		}
		if viaReverseProxy {
			p.reverseProxy(w, r, ri)
		} else {
			p.forward(w, r, ri)
		}
		res := w.Result()
		b, _ := io.ReadAll(res.Body)
		return got, answer{res.StatusCode, res.Header, res.Trailer, string(b)}
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			wantSeen, wantAnswer := run(t, c, true)
			gotSeen, gotAnswer := run(t, c, false)
			if !reflect.DeepEqual(gotSeen, wantSeen) {
				t.Errorf("the agent gets\n%+v\nReverseProxy sends it\n%+v", gotSeen, wantSeen)
			}
			if !reflect.DeepEqual(gotAnswer, wantAnswer) {
				t.Errorf("the caller gets\n%+v\nReverseProxy answers\n%+v", gotAnswer, wantAnswer)
			}
			if strings.Contains(name, "every kind") {
				for _, k := range []string{"Impersonate-User", "X-Forwarded-For", "Cookie", "X-Hop-Custom", "Expect"} {
					if _, ok := gotSeen.header[k]; ok {
						t.Errorf("%s reached the agent", k)
					}
				}
				if gotSeen.header.Get("Kas-Proxy-User") != "alice" || gotSeen.header.Get("Te") != "trailers" {
					t.Errorf("identity or Te not as kas sets them: %v", gotSeen.header)
				}
				if _, ok := gotAnswer.header["X-Resp-Hop"]; ok {
					t.Error("a hop-by-hop header of the answer reached the caller")
				}
			}
		})
	}
}

// trailerBody sets its response's trailer at EOF, as a chunked body does.
type trailerBody struct {
	*strings.Reader
	resp    *http.Response
	trailer http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		if b.resp.Trailer == nil {
			b.resp.Trailer = http.Header{}
		}
		for k, v := range b.trailer {
			b.resp.Trailer[k] = v
		}
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }
