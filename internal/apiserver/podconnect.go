package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/proxy"

	"github.com/berth-project/berth/internal/registry"
)

// NodeConnector tells the API server how to reach the agent of a node, as the
// Kubernetes API server reaches a kubelet.
type NodeConnector interface {
	// Location returns the base URL of the node's agent and a transport
	// that authenticates to it.
	Location(ctx context.Context, nodeName string) (*url.URL, http.RoundTripper, error)
}

// servePodConnect relays pods/log, pods/exec and pods/portforward to the
// agent of the pod's node, upgrading the connection for streams.
func (s *Server) servePodConnect(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	if info.Resource != "pods" || info.Subresource == "proxy" || info.Subresource == "attach" {
		writeError(w, apierrors.NewMethodNotSupported(store.Kind.GroupResource(), info.Subresource))
		return
	}
	obj, err := store.Get(r.Context(), info.Namespace, info.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	pod := obj.(*corev1.Pod)
	q := r.URL.Query()
	var path string
	switch info.Subresource {
	case "log":
		c, err := pickContainer(pod, q.Get("container"), q.Get("previous") == "true")
		if err != nil {
			writeError(w, err)
			return
		}
		path = fmt.Sprintf("/containerLogs/%s/%s/%s", pod.Namespace, pod.Name, c)
	case "exec":
		c, err := pickContainer(pod, q.Get("container"), false)
		if err != nil {
			writeError(w, err)
			return
		}
		if err := runningContainer(pod, c); err != nil {
			writeError(w, err)
			return
		}
		if len(q["command"]) == 0 {
			writeError(w, apierrors.NewBadRequest("you must specify at least 1 command"))
			return
		}
		path = fmt.Sprintf("/exec/%s/%s/%s", pod.Namespace, pod.Name, c)
	case "portforward":
		if pod.Status.Phase != corev1.PodRunning {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("pod %s is not running (phase %s); port-forward needs a running pod", pod.Name, pod.Status.Phase)))
			return
		}
		path = fmt.Sprintf("/portForward/%s/%s", pod.Namespace, pod.Name)
	}
	tunnel := false
	if isWebSocketTunnel(r) {
		// kubectl 1.32 first tries WebSockets and falls back to SPDY on any
		// answer other than 101. berth relays the port-forward tunnel
		// (SPDY inside WebSocket) to the agent; exec over WebSocket is
		// answered 400, and kubectl then uses SPDY.
		if info.Subresource != "portforward" || !wantsSPDYTunnel(r) {
			writeError(w, apierrors.NewBadRequest("this WebSocket protocol is not supported by berth; use SPDY (kubectl falls back to it by itself)"))
			return
		}
		tunnel = true
	}
	if pod.Spec.NodeName == "" {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name)))
		return
	}
	if s.cfg.Nodes == nil {
		writeError(w, apierrors.NewServiceUnavailable("no node agents are connected to this API server"))
		return
	}
	base, transport, err := s.cfg.Nodes.Location(r.Context(), pod.Spec.NodeName)
	if err != nil {
		writeError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("cannot reach the agent of node %s: %v", pod.Spec.NodeName, err)))
		return
	}
	loc := *base
	loc.Path = path
	q.Set("podUID", string(pod.UID))
	loc.RawQuery = q.Encode()
	if tunnel {
		s.serveSPDYTunnel(w, r, &loc, transport)
		return
	}
	h := proxy.NewUpgradeAwareHandler(&loc, transport, false, info.Subresource != "log", errorResponder{})
	h.UseLocationHost = true
	h.ServeHTTP(w, r)
}

type errorResponder struct{}

func (errorResponder) Error(w http.ResponseWriter, _ *http.Request, err error) {
	writeError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("error reaching the node agent: %v", err)))
}

func isWebSocketTunnel(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// pickContainer resolves the container parameter as Kubernetes does.
func pickContainer(pod *corev1.Pod, name string, previous bool) (string, error) {
	all := make([]string, 0, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
	for _, c := range pod.Spec.Containers {
		all = append(all, c.Name)
	}
	inits := make([]string, 0, len(pod.Spec.InitContainers))
	for _, c := range pod.Spec.InitContainers {
		inits = append(inits, c.Name)
	}
	if name == "" {
		if len(pod.Spec.Containers) == 1 {
			return pod.Spec.Containers[0].Name, nil
		}
		msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", pod.Name, all)
		if len(inits) > 0 {
			msg += fmt.Sprintf(" or one of the init containers: %v", inits)
		}
		return "", apierrors.NewBadRequest(msg)
	}
	for _, c := range append(all, inits...) {
		if c == name {
			return name, nil
		}
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
}

func runningContainer(pod *corev1.Pod, name string) error {
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.ContainerStatuses...), pod.Status.InitContainerStatuses...) {
		if cs.Name != name {
			continue
		}
		if cs.State.Running != nil {
			return nil
		}
		if w := cs.State.Waiting; w != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("container %s is not running: waiting (%s)", name, w.Reason))
		}
		return apierrors.NewBadRequest(fmt.Sprintf("cannot exec into a container in a completed pod; current phase is %s", pod.Status.Phase))
	}
	return apierrors.NewBadRequest(fmt.Sprintf("container %s in pod %s is waiting to start: ContainerCreating", name, pod.Name))
}
