// Package apply is agentk's GitOps engine: it applies the manifests of
// manifest projects to the agent's cluster with gitops-engine
// (github.com/argoproj/argo-cd/gitops-engine/v3) and prunes what a project
// no longer contains.
//
// One Applier serves all projects of an agent (New, then Run for its
// lifetime). Parse turns a project's files into objects; Sync applies them:
//
//	objs, err := applier.Parse(files, project.DefaultNamespace) // *ParseError names file and document
//	res, err := applier.Sync(ctx, project, commit, objs)
//
// How it uses gitops-engine:
//
//   - One cluster cache per Applier watches the kinds the projects manage
//     (resource_inclusions/exclusions) and keeps the manifests of the
//     objects agentk manages. Objects are marked with AnnotationManagedBy,
//     "<agent>/<project>/<default namespace>": only a project's own
//     objects are pruned, and inventory_policy decides what a project may
//     take over.
//   - Sync drives pkg/sync itself: each step reads the live state afresh
//     and resumes the operation from the previous step's state, so sync
//     waves and hooks (argocd.argoproj.io/sync-wave, argocd.argoproj.io/hook)
//     advance; engine.Sync would keep its first snapshot and never pass a
//     wave.
//   - Only objects that differ are applied (a no-op resync sends nothing):
//     an object differs when its manifest hash (AnnotationManifestHash)
//     changed, or when a diff of the fields its manifest sets against the
//     live object finds a difference, so changes made by hand are put
//     back. Objects still at the resourceVersion at which they were last
//     found equal are not diffed again.
//   - Applies are server-side applies with field manager "agentk" (objects
//     over 262 KB, such as big CRDs, cannot carry last-applied-configuration),
//     made with one shared client instead of gitops-engine's kubectl code,
//     which writes a kubeconfig and a manifest to TMPDIR per object.
//     Manifest validation is off; the OpenAPI schema is never loaded.
//   - CustomResourceDefinitions are applied before other kinds and awaited;
//     custom objects whose CRD is among the manifests skip the dry run.
package apply
