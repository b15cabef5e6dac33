package apply

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/common"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
)

// pruneSettle bounds the wait, at the end of a sync, for the objects it
// pruned to be gone from the cluster cache. Objects still there then are
// pending prunes: reported, not waited for.
var pruneSettle = 3 * time.Second

// waitsOnlyForDeletion reports whether gitops-engine's operation message
// says that all that is left is waiting for pruned objects to be deleted
// (not hooks).
func waitsOnlyForDeletion(msg string) bool {
	return strings.HasPrefix(msg, "waiting for deletion of ") && !strings.HasPrefix(msg, "waiting for deletion of hook")
}

// settlePrunes waits (up to pruneSettle, and at most prune_timeout) for the
// objects this sync pruned to be gone or held by finalizers, then returns
// every object of the project that is being deleted and is no longer in
// its manifests.
func (s *syncRun) settlePrunes(ctx context.Context, changed <-chan struct{}, results []common.ResourceSyncResult) []PendingPrune {
	pruned := map[kube.ResourceKey]bool{}
	for _, r := range results {
		if r.Status == common.ResultCodePruned && r.Message == "pruned" {
			pruned[r.ResourceKey] = true
		}
	}
	if len(pruned) > 0 {
		deadline := time.NewTimer(min(pruneSettle, s.p.PruneTimeout))
		defer deadline.Stop()
	wait:
		for {
			// An object the cache shows held by finalizers will not go
			// soon: no need to wait for it.
			left := s.a.cache.FindResources("", func(r *cache.Resource) bool {
				held := r.Resource != nil && r.Resource.GetDeletionTimestamp() != nil && len(r.Resource.GetFinalizers()) > 0
				return pruned[r.ResourceKey()] && markOf(r) == s.mark && !held
			})
			if len(left) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				break wait
			case <-deadline.C:
				break wait
			case <-changed:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return s.pendingPrunes()
}

// pendingPrunes lists the project's objects that have a deletionTimestamp
// and are not among its targets.
func (s *syncRun) pendingPrunes() []PendingPrune {
	wanted := make(map[kube.ResourceKey]bool, len(s.targets))
	for _, t := range s.targets {
		wanted[kube.GetResourceKey(t)] = true
	}
	found := s.a.cache.FindResources("", func(r *cache.Resource) bool {
		return markOf(r) == s.mark && r.Resource != nil && r.Resource.GetDeletionTimestamp() != nil && !wanted[r.ResourceKey()]
	})
	out := make([]PendingPrune, 0, len(found))
	for k, r := range found {
		out = append(out, PendingPrune{
			Object:     describeKey(k.GroupKind(), k.Namespace, k.Name),
			Finalizers: slices.Clone(r.Resource.GetFinalizers()),
			Since:      r.Resource.GetDeletionTimestamp().Time,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	return out
}

// overdue says which pending prunes have waited longer than prune_timeout.
func (s *syncRun) overdue(pending []PendingPrune) string {
	var late []string
	for _, p := range pending {
		if s.a.clock.Since(p.Since) > s.p.PruneTimeout {
			late = append(late, p.String())
		}
	}
	if len(late) == 0 {
		return ""
	}
	return fmt.Sprintf("prune_timeout (%s) reached: %s", s.p.PruneTimeout, strings.Join(late, "; "))
}

// String says what the object waits for and since when.
func (p PendingPrune) String() string {
	what := "its dependents (foreground deletion) or finalizers"
	if len(p.Finalizers) > 0 {
		what = "finalizer " + strings.Join(p.Finalizers, ", ")
	}
	return fmt.Sprintf("%s is being deleted since %s, waiting for %s", p.Object, p.Since.UTC().Format(time.RFC3339), what)
}
