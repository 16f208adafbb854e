package podspec

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestBuild(t *testing.T) {
	const berth = "/usr/local/bin/berth"
	base := Options{
		BerthPath: berth,
		BaseEnv:   []string{"PATH=/usr/bin:/bin", "HOME=/root"},
		Addresses: PodAddresses{PodIPs: []string{"127.244.0.9"}, HostIPs: []string{"127.0.0.1"}},
	}
	tests := []struct {
		name       string
		pod        func(*corev1.Pod)
		container  corev1.Container
		opts       func(*Options)
		wantArgv   []string
		wantEnv    []string
		wantDir    string
		wantUID    *int64
		wantGID    *int64
		wantReason string
		wantMsg    string
	}{
		{
			name:      "command and args with expansion",
			container: corev1.Container{Image: "busybox", Command: []string{"sh", "-c"}, Args: []string{"echo $(MSG) $$(MSG)"}, Env: []corev1.EnvVar{{Name: "MSG", Value: "hi"}}},
			wantArgv:  []string{"sh", "-c", "echo hi $(MSG)"},
			wantEnv:   []string{"PATH=/usr/bin:/bin", "HOME=/root", "HOSTNAME=web-1", "MSG=hi"},
		},
		{
			name:      "agnhost image without command runs pause",
			container: corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53"},
			wantArgv:  []string{berth, "agnhost", "pause"},
		},
		{
			name:      "agnhost args are expanded",
			container: corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Args: []string{"netexec", "--http-port=$(PORT)"}, Env: []corev1.EnvVar{{Name: "PORT", Value: "8080"}}},
			opts:      func(o *Options) { o.BindAddress = "127.244.0.9" },
			wantArgv:  []string{berth, "agnhost", "netexec", "--http-port=8080"},
			wantEnv:   []string{"PATH=/usr/bin:/bin", "HOME=/root", "HOSTNAME=web-1", "BERTH_BIND_ADDRESS=127.244.0.9", "PORT=8080"},
		},
		{
			name:      "agnhost with its entrypoint as command",
			container: corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.40", Command: []string{"/agnhost", "serve-hostname"}, Args: []string{"--port=9376"}},
			wantArgv:  []string{berth, "agnhost", "serve-hostname", "--port=9376"},
		},
		{
			name:      "agnhost image with a shell command runs the shell",
			container: corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Command: []string{"/bin/sh", "-c", "sleep 1"}},
			wantArgv:  []string{"/bin/sh", "-c", "sleep 1"},
		},
		{
			name:      "pause image",
			container: corev1.Container{Image: "registry.k8s.io/pause:3.10"},
			wantArgv:  []string{berth, "agnhost", "pause"},
		},
		{
			name:       "other image without command",
			container:  corev1.Container{Name: "web", Image: "nginx:1.25"},
			wantReason: ReasonCommandRequired,
			wantMsg:    `berth runs containers as local processes and cannot run image "nginx:1.25" without a command; set spec.containers[0].command, or use registry.k8s.io/e2e-test-images/agnhost`,
		},
		{
			name:       "args without command need a command too",
			container:  corev1.Container{Image: "busybox", Args: []string{"sleep", "10"}},
			wantReason: ReasonCommandRequired,
		},
		{
			name:      "container env overrides the base",
			container: corev1.Container{Image: "x", Command: []string{"env"}, Env: []corev1.EnvVar{{Name: "PATH", Value: "/opt/bin"}, {Name: "HOSTNAME", Value: "custom"}}},
			wantEnv:   []string{"HOME=/root", "PATH=/opt/bin", "HOSTNAME=custom"},
			wantArgv:  []string{"env"},
		},
		{
			name: "service links, shadowed by and expanded in the container's env",
			container: corev1.Container{Image: "x", Command: []string{"echo", "$(DEMO_SERVICE_HOST)"}, Env: []corev1.EnvVar{
				{Name: "DEMO_SERVICE_PORT", Value: "9999"},
				{Name: "URL", Value: "http://$(DEMO_SERVICE_HOST):$(DEMO_SERVICE_PORT)"},
			}},
			opts: func(o *Options) {
				o.ServiceEnv = map[string]string{"DEMO_SERVICE_PORT": "8080", "DEMO_SERVICE_HOST": "10.96.0.10"}
			},
			wantArgv: []string{"echo", "10.96.0.10"},
			wantEnv:  []string{"PATH=/usr/bin:/bin", "HOME=/root", "HOSTNAME=web-1", "DEMO_SERVICE_HOST=10.96.0.10", "DEMO_SERVICE_PORT=9999", "URL=http://10.96.0.10:9999"},
		},
		{
			name:      "spec.hostname wins over the pod name",
			pod:       func(p *corev1.Pod) { p.Spec.Hostname = "db-0" },
			container: corev1.Container{Image: "x", Command: []string{"true"}},
			wantArgv:  []string{"true"},
			wantEnv:   []string{"PATH=/usr/bin:/bin", "HOME=/root", "HOSTNAME=db-0"},
		},
		{
			name:      "working dir",
			container: corev1.Container{Image: "x", Command: []string{"pwd"}, WorkingDir: "/tmp/./x/"},
			wantArgv:  []string{"pwd"},
			wantDir:   "/tmp/x",
		},
		{
			name:       "relative working dir",
			container:  corev1.Container{Image: "x", Command: []string{"pwd"}, WorkingDir: "tmp"},
			wantReason: ReasonCreateContainerConfigError,
		},
		{
			name: "container user overrides pod user when root",
			pod: func(p *corev1.Pod) {
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000)}
			},
			container: corev1.Container{Image: "x", Command: []string{"id"}, SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](2000)}},
			opts:      func(o *Options) { o.Root = true },
			wantArgv:  []string{"id"},
			wantUID:   ptr.To[int64](2000),
			wantGID:   ptr.To[int64](1000),
		},
		{
			name: "users are ignored when not root",
			pod: func(p *corev1.Pod) {
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)}
			},
			container: corev1.Container{Image: "x", Command: []string{"id"}},
			opts:      func(o *Options) { o.UID = 1001 },
			wantArgv:  []string{"id"},
		},
		{
			name:       "runAsNonRoot as root",
			pod:        func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)} },
			container:  corev1.Container{Name: "app", Image: "x", Command: []string{"id"}},
			opts:       func(o *Options) { o.Root = true },
			wantReason: ReasonCreateContainerConfigError,
			wantMsg:    `container has runAsNonRoot and image will run as root (pod: "web-1_shop(1234-5678)", container: app)`,
		},
		{
			name:      "runAsNonRoot satisfied by runAsUser",
			pod:       func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)} },
			container: corev1.Container{Image: "x", Command: []string{"id"}, SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](65534)}},
			opts:      func(o *Options) { o.Root = true },
			wantArgv:  []string{"id"},
			wantUID:   ptr.To[int64](65534),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod()
			if tt.pod != nil {
				tt.pod(pod)
			}
			opts := base
			if tt.opts != nil {
				tt.opts(&opts)
			}
			p, err := Build(context.Background(), pod, &tt.container, "spec.containers[0]", opts)
			if tt.wantReason != "" {
				var pe *Error
				if !errors.As(err, &pe) || pe.Reason != tt.wantReason {
					t.Fatalf("err = %v, want reason %s", err, tt.wantReason)
				}
				if tt.wantMsg != "" && pe.Message != tt.wantMsg {
					t.Fatalf("message = %q\nwant      %q", pe.Message, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Argv, tt.wantArgv) {
				t.Errorf("argv = %q, want %q", p.Argv, tt.wantArgv)
			}
			if tt.wantEnv != nil && !slices.Equal(p.Env, tt.wantEnv) {
				t.Errorf("env = %q, want %q", p.Env, tt.wantEnv)
			}
			if p.Dir != tt.wantDir {
				t.Errorf("dir = %q, want %q", p.Dir, tt.wantDir)
			}
			if !equalPtr(p.UID, tt.wantUID) || !equalPtr(p.GID, tt.wantGID) {
				t.Errorf("uid/gid = %v/%v, want %v/%v", deref(p.UID), deref(p.GID), deref(tt.wantUID), deref(tt.wantGID))
			}
		})
	}
}

func equalPtr(a, b *int64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestHostname(t *testing.T) {
	long := strings.Repeat("a", 62) + "-b"
	p := testPod()
	p.Name = long
	if got := Hostname(p); got != strings.Repeat("a", 62) {
		t.Errorf("Hostname = %q", got)
	}
}
