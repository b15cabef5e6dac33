// Package kubelet is a stand-in kubelet for tests against a kube-apiserver
// that has no nodes. kube-apiserver serves exec, attach, port-forward and
// container logs by dialing the kubelet at the address and port recorded in
// the Node's status; a Node pointing at this server's loopback port and a
// Pod bound to that Node make real kubectl exec, attach, logs -f and
// port-forward work end to end.
//
// The streaming protocols are the kubelet's own code
// (k8s.io/cri-streaming); only what runs behind them is fake: exec runs a
// local process, attach is an echo loop, port-forward dials a local address
// chosen by the test, and logs are canned lines.
package kubelet
