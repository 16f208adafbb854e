// Package server is the node agent's HTTPS API, the part of a kubelet's API
// that the API server relays kubectl's streaming requests to:
//
//	GET       /containerLogs/{namespace}/{pod}/{container}  kubectl logs
//	GET|POST  /exec/{namespace}/{pod}/{container}           kubectl exec (SPDY)
//	GET|POST  /portForward/{namespace}/{pod}                kubectl port-forward (SPDY)
//	GET       /healthz                                      liveness, no client certificate needed
//
// The paths and query parameters are the ones berth's API server sends
// (internal/apiserver/podconnect.go): the API request's query plus podUID.
// Every request but /healthz must present a client certificate signed by
// the cluster CA (the API server presents its admin certificate); others get
// 401. Errors are metav1.Status JSON bodies, so that kubectl prints them as
// it prints a real kubelet's ("Error from server (BadRequest): ...").
//
// The server knows nothing about pods: it resolves requests through a
// Backend, which the agent implements.
package server
