package apply

import (
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/hook"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// health is the worst gitops-engine health of the project's objects (hooks
// left out), judged on the freshest state known: the API server's answer
// to this sync's apply, else the live state read at the last step. An
// object that is not there is Missing (except in a dry run, where nothing
// was created); objects gitops-engine has no assessment for count as
// Healthy.
func (s *syncRun) health(dryRun bool) string {
	applied := s.applied.snapshot()
	worst := health.HealthStatusHealthy
	for _, t := range s.targets {
		if hook.IsHook(t) {
			continue
		}
		k := kube.GetResourceKey(t)
		if _, refused := s.refused[k]; refused {
			continue
		}
		obj := applied[k]
		if obj == nil {
			obj = s.live[k]
		}
		status := health.HealthStatusHealthy
		switch {
		case obj == nil && dryRun:
		case obj == nil:
			status = health.HealthStatusMissing
		default:
			status = objectHealth(obj)
		}
		if health.IsWorse(worst, status) {
			worst = status
		}
	}
	return string(worst)
}

// objectHealth is gitops-engine's health of one object: Unknown when it
// cannot judge, Healthy when it has no assessment for the kind.
func objectHealth(obj *unstructured.Unstructured) health.HealthStatusCode {
	h, err := health.GetResourceHealth(obj, nil)
	switch {
	case err != nil:
		return health.HealthStatusUnknown
	case h != nil:
		return h.Status
	}
	return health.HealthStatusHealthy
}
