// Package endpoints maintains the legacy core/v1 Endpoints object of every
// Service with a selector, for clients that still read it (kubectl describe
// service prints its "Endpoints:" line from it).
//
// Unlike upstream's endpoints controller, which derives Endpoints from Pods,
// this one mirrors the EndpointSlices that the endpointslice controller
// manages, so both views always agree on readiness and ports.
package endpoints
