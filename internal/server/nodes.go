package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/berth-project/berth/internal/registry"
)

// AgentEndpointAnnotation is where a node agent says how to reach it.
const AgentEndpointAnnotation = "berth.dev/agent-endpoint"

// nodeConnector finds node agents from their Node objects, as kube-apiserver
// finds kubelets: the agent's own annotation, else InternalIP and the
// daemon endpoint port. Like kube-apiserver without
// --kubelet-certificate-authority it does not verify the agent's serving
// certificate (a standalone agent's is self-signed); it authenticates itself
// with the admin client certificate, which the agent checks against the CA.
type nodeConnector struct {
	nodes     *registry.Store
	transport *http.Transport
}

func newNodeConnector(nodes *registry.Store, clientCert tls.Certificate) *nodeConnector {
	return &nodeConnector{nodes: nodes, transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			Certificates:       []tls.Certificate{clientCert},
			InsecureSkipVerify: true, //nolint:gosec // see type comment
		},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}}
}

func (c *nodeConnector) Location(ctx context.Context, nodeName string) (*url.URL, http.RoundTripper, error) {
	obj, err := c.nodes.Get(ctx, "", nodeName)
	if err != nil {
		return nil, nil, err
	}
	n := obj.(*corev1.Node)
	if ep := n.Annotations[AgentEndpointAnnotation]; ep != "" {
		u, err := url.Parse(ep)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s: bad %s annotation %q: %w", nodeName, AgentEndpointAnnotation, ep, err)
		}
		return u, c.transport, nil
	}
	port := n.Status.DaemonEndpoints.KubeletEndpoint.Port
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && port > 0 {
			return &url.URL{Scheme: "https", Host: net.JoinHostPort(a.Address, strconv.Itoa(int(port)))}, c.transport, nil
		}
	}
	return nil, nil, fmt.Errorf("node %s has no agent endpoint", nodeName)
}
