package apply

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	// AnnotationDependsOn is cli-utils' (GitLab agent's) dependency
	// annotation: a comma-separated list of objects that must be applied
	// and reconciled first, each "<group>/namespaces/<namespace>/<kind>/<name>"
	// or, cluster-scoped, "<group>/<kind>/<name>" (the core group is empty).
	AnnotationDependsOn = "config.kubernetes.io/depends-on"
	// annotationSyncWave is Argo CD's wave annotation, which gitops-engine
	// orders by, each wave waiting for the previous one to be healthy.
	annotationSyncWave = "argocd.argoproj.io/sync-wave"
)

// orderByDependencies turns depends-on annotations into sync waves: an
// object goes in a later wave than every object it depends on that is
// among objs (dependencies outside the commit are not waited for). An
// object's own sync-wave is kept when it is later. A cycle is
// ErrDependencyCycle naming the objects in it.
func orderByDependencies(objs []*unstructured.Unstructured) error {
	index := make(map[string]int, len(objs))
	for i, o := range objs {
		gvk := o.GroupVersionKind()
		index[dependencyKey(gvk.Group, gvk.Kind, o.GetNamespace(), o.GetName())] = i
	}
	deps := make([][]int, len(objs))
	found := false
	for i, o := range objs {
		v := o.GetAnnotations()[AnnotationDependsOn]
		if v == "" {
			continue
		}
		for ref := range strings.SplitSeq(v, ",") {
			ref = strings.TrimSpace(ref)
			if ref == "" {
				continue
			}
			key, err := parseDependency(ref)
			if err != nil {
				return fmt.Errorf("%w: %s: %s %q: %v", ErrInvalidProject, describe(o), AnnotationDependsOn, ref, err)
			}
			if j, ok := index[key]; ok && j != i {
				deps[i] = append(deps[i], j)
				found = true
			}
		}
	}
	if !found {
		return nil
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(objs))
	waves := make([]int, len(objs))
	var visit func(i int, path []int) error
	visit = func(i int, path []int) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			var names []string
			for _, j := range append(path, i) {
				names = append(names, describe(objs[j]))
			}
			return fmt.Errorf("%w: %s", ErrDependencyCycle, strings.Join(names, " -> "))
		}
		state[i] = visiting
		w := ownWave(objs[i])
		for _, j := range deps[i] {
			if err := visit(j, append(path, i)); err != nil {
				return err
			}
			w = max(w, waves[j]+1)
		}
		waves[i], state[i] = w, done
		return nil
	}
	for i := range objs {
		if err := visit(i, nil); err != nil {
			return err
		}
	}
	for i, o := range objs {
		if len(deps[i]) > 0 && waves[i] != ownWave(o) {
			ann := o.GetAnnotations()
			ann[annotationSyncWave] = strconv.Itoa(waves[i])
			o.SetAnnotations(ann)
		}
	}
	return nil
}

func ownWave(o *unstructured.Unstructured) int {
	w, _ := strconv.Atoi(o.GetAnnotations()[annotationSyncWave])
	return w
}

func dependencyKey(group, kind, namespace, name string) string {
	return group + "/" + kind + "/" + namespace + "/" + name
}

// parseDependency turns one depends-on reference into a dependencyKey.
func parseDependency(ref string) (string, error) {
	parts := strings.Split(ref, "/")
	switch {
	case len(parts) == 5 && parts[1] == "namespaces":
		if parts[2] == "" || parts[3] == "" || parts[4] == "" {
			return "", fmt.Errorf("want <group>/namespaces/<namespace>/<kind>/<name>")
		}
		return dependencyKey(parts[0], parts[3], parts[2], parts[4]), nil
	case len(parts) == 3:
		if parts[1] == "" || parts[2] == "" {
			return "", fmt.Errorf("want <group>/<kind>/<name>")
		}
		return dependencyKey(parts[0], parts[1], "", parts[2]), nil
	}
	return "", fmt.Errorf("want <group>/namespaces/<namespace>/<kind>/<name> or <group>/<kind>/<name>")
}
