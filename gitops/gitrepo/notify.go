package gitrepo

// subscription is one Subscribe call.
type subscription struct {
	ch chan struct{} // capacity 1: a pending value stands for any number of changes
}

func (m *mirror) subscribe() (<-chan struct{}, func()) {
	s := &subscription{ch: make(chan struct{}, 1)}
	m.mu.Lock()
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	cancel := func() {
		m.mu.Lock()
		delete(m.subs, s)
		m.mu.Unlock()
	}
	return s.ch, cancel
}

// notify wakes every subscriber without waiting for any.
func (m *mirror) notify() {
	m.mu.Lock()
	subs := make([]*subscription, 0, len(m.subs))
	for s := range m.subs {
		subs = append(subs, s)
	}
	m.mu.Unlock()
	for _, s := range subs {
		select {
		case s.ch <- struct{}{}:
		default: // a value is pending already
		}
	}
}
