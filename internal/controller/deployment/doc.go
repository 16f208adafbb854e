// Package deployment rolls Deployments out through ReplicaSets, as the
// Deployment controller of kube-controller-manager does: one ReplicaSet per
// pod template (named after the template's pod-template-hash), a rolling
// update bounded by maxSurge and maxUnavailable or a Recreate, revision
// annotations for `kubectl rollout history/undo`, cleanup of old revisions,
// pausing, proportional scaling, and the Progressing and Available
// conditions that `kubectl rollout status` reads.
//
// The controller only changes ReplicaSets (their replicas and annotations);
// the ReplicaSet controller makes and deletes the Pods. How many replicas
// each step may add or remove is computed by pure functions (replicas.go,
// rolling.go) that are tested without a server.
package deployment
