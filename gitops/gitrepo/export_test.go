package gitrepo

// waitingFetches returns how many Fetch callers wait for a fetch of id
// that another caller runs.
func (c *Cache) waitingFetches(id string) int {
	m := c.mirrors[id]
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting
}
