package kubelet

import "net/http"

// routes maps the kubelet API paths that kube-apiserver uses. The real
// kubelet also accepts a pod UID segment before the container name; both
// forms are served.
func (k *Kubelet) routes() http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, k.track(k.serveExec))
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, k.track(k.serveAttach))
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		mux.HandleFunc(p, k.track(k.servePortForward))
	}
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", k.track(k.serveContainerLogs))
	mux.HandleFunc("/", k.track(http.NotFound))
	return mux
}

// podName identifies a pod in error messages the way the kubelet does.
func podName(r *http.Request) string {
	return r.PathValue("pod") + "_" + r.PathValue("ns")
}
