// Package scheduler binds Pods that name no node to a Ready, schedulable
// Node: a deliberately tiny stand-in for kube-scheduler that spreads Pods by
// choosing the Node that runs the fewest of them.
//
// It honours spec.schedulerName (only the default scheduler's Pods are its
// business), spec.nodeSelector, node taints against Pod tolerations, and the
// Node's allocatable pod count; it knows nothing of resources, affinity or
// preemption.
package scheduler
