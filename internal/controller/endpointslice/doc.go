// Package endpointslice keeps the EndpointSlices of every Service with a
// selector in step with the Pods that selector matches, as the EndpointSlice
// controller of kube-controller-manager does.
//
// The package is only the controller shell (informers, a rate-limited
// workqueue keyed by namespace/name, retries and event wiring); which slices
// to create, update and delete is decided by the upstream reconciler in
// k8s.io/endpointslice, used as it is.
package endpointslice
