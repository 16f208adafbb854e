// Package replicaset keeps the Pods of every ReplicaSet at spec.replicas, as
// the ReplicaSet controller of kube-controller-manager does: it creates Pods
// from spec.template, deletes the least valuable ones first when there are too
// many, adopts matching orphans and releases Pods that stopped matching, and
// reports replicas, readiness and availability in the ReplicaSet's status.
//
// It is a client of the Kubernetes API only (informers, listers and a
// rate-limited workqueue), so it runs the same against berth's API server and
// a real cluster. The pure parts (expectations, the deletion order, status
// computation and the controller-ref claim rules) live in their own files and
// are tested without a server.
package replicaset
