// Package apiserver is berth's Kubernetes-compatible HTTPS API: routing,
// authentication by client certificate, content negotiation (JSON, YAML and
// meta.k8s.io Tables), discovery, OpenAPI, limits, Status errors, and the
// verbs of every kind, which it serves from the generic registry. Pod
// subresources that need the node (log, exec, portforward) are relayed to the
// pod's node agent.
package apiserver
