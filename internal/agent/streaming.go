package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/berth-project/berth/internal/agent/network"
	"github.com/berth-project/berth/internal/agent/runtime"
	"github.com/berth-project/berth/internal/agent/server"
)

// The Agent is the agent API's backend.
var _ server.Backend = (*Agent)(nil)

var podsResource = schema.GroupResource{Resource: "pods"}

// podFor finds the worker of a Pod the API server asks about.
func (a *Agent) podFor(ref server.PodRef) (*podWorker, workerView, *corev1.Pod, error) {
	w := a.worker(ref)
	if w == nil {
		return nil, workerView{}, nil, apierrors.NewNotFound(podsResource, ref.Name)
	}
	pod, _ := w.current()
	return w, w.snapshot(), pod, nil
}

// ContainerLog picks the attempt whose log to show as the kubelet does from
// the container's status: with previous, the last terminated one;
// otherwise the running one, else the last terminated one.
func (a *Agent) ContainerLog(ctx context.Context, ref server.ContainerRef, previous bool) (server.LogFile, error) {
	_, v, pod, err := a.podFor(ref.PodRef)
	if err != nil {
		return server.LogFile{}, err
	}
	cs, err := containerStatusFor(pod, v, ref.Container)
	if err != nil {
		return server.LogFile{}, err
	}
	id, err := logContainerID(cs, ref.Name, previous)
	if err != nil {
		return server.LogFile{}, err
	}
	st, ok := v.attempts[strings.TrimPrefix(id, ContainerIDScheme)]
	if !ok || st.Spec.LogPath == "" {
		return server.LogFile{}, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q has no logs on this node any more", ref.Container, ref.Name))
	}
	exited := make(chan struct{})
	if st.Running {
		go func() {
			// Ends with the request at the latest.
			if _, err := a.rt.Wait(ctx, st.ID); err == nil {
				close(exited)
			}
		}()
	} else {
		close(exited)
	}
	return server.LogFile{Path: st.Spec.LogPath, Exited: exited}, nil
}

func containerStatusFor(pod *corev1.Pod, v workerView, name string) (corev1.ContainerStatus, error) {
	known := false
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			known = known || c.Name == name
		}
	}
	if !known {
		return corev1.ContainerStatus{}, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
	}
	st := pod.Status
	if v.status != nil {
		st = *v.status
	}
	all := append(append([]corev1.ContainerStatus{}, st.ContainerStatuses...), st.InitContainerStatuses...)
	cs, ok := findStatus(all, name)
	if !ok {
		return corev1.ContainerStatus{}, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: %s", name, pod.Name, reasonContainerCreating))
	}
	return cs, nil
}

// logContainerID is the kubelet's validateContainerLogStatus.
func logContainerID(cs corev1.ContainerStatus, pod string, previous bool) (string, error) {
	last := cs.LastTerminationState.Terminated
	switch {
	case previous:
		if last == nil || last.ContainerID == "" {
			return "", apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", cs.Name, pod))
		}
		return last.ContainerID, nil
	case cs.State.Running != nil:
		return cs.ContainerID, nil
	case cs.State.Terminated != nil:
		if id := cs.State.Terminated.ContainerID; id != "" {
			return id, nil
		}
		if last != nil && last.ContainerID != "" {
			return last.ContainerID, nil
		}
		return "", apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is terminated", cs.Name, pod))
	case last != nil:
		if last.ContainerID == "" {
			return "", apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is terminated", cs.Name, pod))
		}
		return last.ContainerID, nil
	case cs.State.Waiting != nil:
		return "", apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: %s", cs.Name, pod, cs.State.Waiting.Reason))
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start - no logs yet", cs.Name, pod))
}

// Exec runs cmd next to the container's running process: same network
// namespace, environment, user and working directory.
func (a *Agent) Exec(ctx context.Context, ref server.ContainerRef, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	_, v, pod, err := a.podFor(ref.PodRef)
	if err != nil {
		return -1, err
	}
	cs, err := containerStatusFor(pod, v, ref.Container)
	if err != nil {
		return -1, err
	}
	st, ok := v.attempts[strings.TrimPrefix(cs.ContainerID, ContainerIDScheme)]
	if cs.State.Running == nil || !ok || !st.Running {
		return -1, apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", ref.Container))
	}
	if stdin != nil {
		// The streaming library hands a stream that only ends with the
		// connection; close our side of the copy when the command is done.
		pr, pw := io.Pipe()
		in := stdin
		go func() {
			io.Copy(pw, in)
			pw.Close()
		}()
		defer pr.Close()
		stdin = pr
	}
	code, err := a.rt.Exec(ctx, runtime.ExecSpec{
		NetNSPath: st.Spec.NetNSPath, Argv: cmd, Env: st.Spec.Env, Dir: st.Spec.Dir,
		UID: st.Spec.UID, GID: st.Spec.GID,
		Stdin: stdin, Stdout: stdout, Stderr: stderr,
	})
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", ref.Container, err)
	}
	return code, nil
}

// PortForward connects stream to port of the Pod: to 127.0.0.1 inside the
// Pod's network namespace (as a CRI runtime does), falling back to the
// Pod's address; in loopback mode to the Pod's address.
func (a *Agent) PortForward(ctx context.Context, ref server.PodRef, port int32, stream io.ReadWriteCloser) error {
	_, v, _, err := a.podFor(ref)
	if err != nil {
		return err
	}
	if v.att == nil {
		return fmt.Errorf("pod %s has no network", ref)
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("invalid port %d", port)
	}
	p := strconv.Itoa(int(port))
	podAddr := net.JoinHostPort(v.att.IP.String(), p)
	d := net.Dialer{Timeout: 5 * time.Second}
	var conn net.Conn
	if ns := v.att.NetNSPath; ns != "" {
		err = network.InNetNS(ns, func() error {
			var derr error
			if conn, derr = d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p)); derr == nil {
				return nil
			}
			conn, derr = d.DialContext(ctx, "tcp4", podAddr)
			return derr
		})
	} else {
		conn, err = d.DialContext(ctx, "tcp4", podAddr)
	}
	if err != nil {
		// The streaming library resets the connection's streams as soon
		// as this returns; if that reset overtakes the reply to the
		// client's stream creation, kubectl reports "Stream reset"
		// instead of this error. Its first write (or EOF) on the stream
		// proves it got the reply.
		settled := make(chan struct{})
		go func() {
			var b [1]byte
			stream.Read(b[:])
			close(settled)
		}()
		select {
		case <-settled:
		case <-time.After(500 * time.Millisecond):
		}
		return fmt.Errorf("failed to connect to %s in pod %s: %w", podAddr, ref, err)
	}
	defer conn.Close()
	var once sync.Once
	done := make(chan struct{})
	finish := func() { once.Do(func() { close(done) }) }
	go func() {
		io.Copy(conn, stream)
		// The client finished sending: pass that on, keep reading.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		} else {
			finish()
		}
	}()
	go func() {
		io.Copy(stream, conn)
		finish()
	}()
	<-done
	return nil
}
