package apply

import (
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/hook"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
)

// OnChange calls fn whenever the cluster cache sees an object of project p
// change (created, updated, deleted): the cache already watches them, so
// health is followed without polling. fn runs under the cache's lock: it
// must not block or call the Applier. Call the returned func to stop.
func (a *Applier) OnChange(p Project, fn func()) (stop func()) {
	m := mark(a.agent, p.withDefaults())
	return a.cache.OnResourceUpdated(func(newRes, oldRes *cache.Resource, _ map[kube.ResourceKey]*cache.Resource) {
		if (newRes != nil && markOf(newRes) == m) || (oldRes != nil && markOf(oldRes) == m) {
			fn()
		}
	})
}

// Health is the worst health of project p's objects as the cluster cache
// shows them now (see Result.Health); objects of the last sync that are
// gone are Missing. "" before the project's first sync.
func (a *Applier) Health(p Project) string {
	m := mark(a.agent, p.withDefaults())
	a.mu.Lock()
	want, synced := a.targets[m]
	a.mu.Unlock()
	if !synced {
		return ""
	}
	a.cacheMu.RLock()
	defer a.cacheMu.RUnlock()
	if a.stopped {
		return ""
	}
	found := a.cache.FindResources("", func(r *cache.Resource) bool {
		_, ok := want[r.ResourceKey()]
		return ok && markOf(r) == m
	})
	worst := health.HealthStatusHealthy
	for k := range want {
		status := health.HealthStatusMissing
		if r, ok := found[k]; ok && r.Resource != nil {
			if hook.IsHook(r.Resource) {
				continue
			}
			status = objectHealth(r.Resource)
		}
		if health.IsWorse(worst, status) {
			worst = status
		}
	}
	return string(worst)
}
