package podspec

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

type fakeResolver struct {
	configMaps map[string]map[string]string
	secrets    map[string]map[string][]byte
}

func (f fakeResolver) ConfigMap(_ context.Context, ns, name string) (map[string]string, error) {
	if m, ok := f.configMaps[ns+"/"+name]; ok {
		return m, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f fakeResolver) Secret(_ context.Context, ns, name string) (map[string][]byte, error) {
	if m, ok := f.secrets[ns+"/"+name]; ok {
		return m, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "shop", UID: "1234-5678",
			Labels:      map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"note": "hi \"there\""},
		},
		Spec: corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "default"},
	}
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func TestFieldRefValue(t *testing.T) {
	pod := testPod()
	addrs := PodAddresses{PodIPs: []string{"10.244.0.5", "fd00::5"}, HostIPs: []string{"10.244.0.1"}}
	tests := []struct {
		path, want, wantErr string
	}{
		{path: "metadata.name", want: "web-1"},
		{path: "metadata.namespace", want: "shop"},
		{path: "metadata.uid", want: "1234-5678"},
		{path: "metadata.labels['app']", want: "web"},
		{path: `metadata.labels["tier"]`, want: "front"},
		{path: "metadata.labels['missing']", want: ""},
		{path: "metadata.annotations['note']", want: `hi "there"`},
		{path: "metadata.labels", want: "app=\"web\"\ntier=\"front\""},
		{path: "metadata.annotations", want: `note="hi \"there\""`},
		{path: "spec.nodeName", want: "node-a"},
		{path: "spec.serviceAccountName", want: "default"},
		{path: "status.podIP", want: "10.244.0.5"},
		{path: "status.podIPs", want: "10.244.0.5,fd00::5"},
		{path: "status.hostIP", want: "10.244.0.1"},
		{path: "status.hostIPs", want: "10.244.0.1"},
		{path: "metadata.labels[app]", wantErr: "invalid field path"},
		{path: "metadata.labels['app'", wantErr: "invalid field path"},
		{path: "spec.containers", wantErr: "unsupported field path"},
		{path: "", wantErr: "unsupported field path"},
	}
	for _, tt := range tests {
		got, err := FieldRefValue(pod, tt.path, addrs)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("FieldRefValue(%q) error = %v, want %q", tt.path, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("FieldRefValue(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
}

func TestResolveEnv(t *testing.T) {
	res := fakeResolver{
		configMaps: map[string]map[string]string{"shop/cfg": {"MODE": "fast", "bad-name!": "x", "LEVEL": "3"}},
		secrets:    map[string]map[string][]byte{"shop/creds": {"PASSWORD": []byte("s3cret")}},
	}
	addrs := PodAddresses{PodIPs: []string{"127.244.0.7"}, HostIPs: []string{"127.0.0.1"}}
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")}
	tests := []struct {
		name      string
		container corev1.Container
		want      []EnvVar
		wantErr   string
	}{
		{
			name: "values expand earlier variables only",
			container: corev1.Container{Env: []corev1.EnvVar{
				{Name: "A", Value: "a"},
				{Name: "B", Value: "$(A)-b-$(C)"},
				{Name: "C", Value: "c"},
				{Name: "D", Value: "$$(A)"},
			}},
			want: []EnvVar{{"A", "a"}, {"B", "a-b-$(C)"}, {"C", "c"}, {"D", "$(A)"}},
		},
		{
			name: "redefinition replaces in place",
			container: corev1.Container{Env: []corev1.EnvVar{
				{Name: "A", Value: "1"}, {Name: "B", Value: "2"}, {Name: "A", Value: "$(A)$(B)"},
			}},
			want: []EnvVar{{"A", "12"}, {"B", "2"}},
		},
		{
			name: "downward API",
			container: corev1.Container{Env: []corev1.EnvVar{
				fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_IP", "status.podIP"),
				fieldEnv("NODE", "spec.nodeName"), fieldEnv("APP", "metadata.labels['app']"),
				{Name: "URL", Value: "http://$(POD_IP):8080"},
			}},
			want: []EnvVar{{"POD_NAME", "web-1"}, {"POD_IP", "127.244.0.7"}, {"NODE", "node-a"}, {"APP", "web"}, {"URL", "http://127.244.0.7:8080"}},
		},
		{
			name:      "field values are not expanded",
			container: corev1.Container{Env: []corev1.EnvVar{{Name: "X", Value: "x"}, fieldEnv("ANN", "metadata.annotations['note']")}},
			want:      []EnvVar{{"X", "x"}, {"ANN", `hi "there"`}},
		},
		{
			name:      "bad field path",
			container: corev1.Container{Env: []corev1.EnvVar{fieldEnv("X", "status.phase")}},
			wantErr:   `env X: unsupported field path "status.phase"`,
		},
		{
			name: "envFrom then env, invalid keys skipped, prefix applied",
			container: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
				Env:     []corev1.EnvVar{{Name: "CFG_MODE", Value: "slow:$(CFG_LEVEL)"}},
			},
			want: []EnvVar{{"CFG_LEVEL", "3"}, {"CFG_MODE", "slow:3"}},
		},
		{
			name: "keys from config maps and secrets",
			container: corev1.Container{Env: []corev1.EnvVar{
				{Name: "MODE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "MODE"}}},
				{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "PASSWORD"}}},
			}},
			want: []EnvVar{{"MODE", "fast"}, {"PW", "s3cret"}},
		},
		{
			name: "missing config map",
			container: corev1.Container{EnvFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}}},
			wantErr: `configmap "nope" not found`,
		},
		{
			name: "optional missing sources are skipped",
			container: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptr.To(true)}}},
				Env: []corev1.EnvVar{
					{Name: "K", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "NOPE", Optional: ptr.To(true)}}},
					{Name: "L", Value: "l"},
				},
			},
			want: []EnvVar{{"L", "l"}},
		},
		{
			name: "missing key",
			container: corev1.Container{Env: []corev1.EnvVar{
				{Name: "K", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "USER"}}}}},
			wantErr: "couldn't find key USER in Secret shop/creds",
		},
		{
			name: "resources: limits default to allocatable, rounded up by divisor",
			container: corev1.Container{
				Name: "app",
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1500Mi")},
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
				},
				Env: []corev1.EnvVar{
					{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
					{Name: "CPU_REQ_M", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
					{Name: "CPU_REQ", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu"}}},
					{Name: "MEM_GI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Gi")}}},
				},
			},
			want: []EnvVar{{"CPU_LIMIT", "4"}, {"CPU_REQ_M", "250"}, {"CPU_REQ", "1"}, {"MEM_GI", "2"}},
		},
		{
			name: "unsupported resource",
			container: corev1.Container{Env: []corev1.EnvVar{
				{Name: "X", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.gpu"}}}}},
			wantErr: `unsupported resource "limits.gpu"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveEnv(context.Background(), testPod(), &tt.container, addrs, alloc, res, nil)
			if tt.wantErr != "" {
				var pe *Error
				if !errors.As(err, &pe) || pe.Reason != ReasonCreateContainerConfigError || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want a CreateContainerConfigError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("env = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("env = %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestResolveEnvWithoutResolver(t *testing.T) {
	c := corev1.Container{EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}
	_, err := ResolveEnv(context.Background(), testPod(), &c, PodAddresses{}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `get configmap "cfg"`) {
		t.Fatalf("err = %v", err)
	}
}
