package controlplane

// PIDs exposes the process ids so tests can check that Stop ended them.
func (c *ControlPlane) PIDs() []int {
	var pids []int
	for _, p := range []*process{c.etcd, c.apiserver} {
		if p != nil {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}
