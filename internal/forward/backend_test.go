package forward

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// ep builds a slice endpoint; ready and terminating are "", "true" or "false"
// ("" leaves the condition nil).
func ep(pod, ready, terminating string) discoveryv1.Endpoint {
	cond := func(s string) *bool {
		if s == "" {
			return nil
		}
		return ptr.To(s == "true")
	}
	e := discoveryv1.Endpoint{
		Addresses:  []string{"10.0.0.1"},
		Conditions: discoveryv1.EndpointConditions{Ready: cond(ready), Terminating: cond(terminating)},
	}
	if pod != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: pod}
	}
	return e
}

func slice(name string, ports map[string]int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(n), Port: ptr.To(p), Protocol: ptr.To(corev1.ProtocolTCP)})
	}
	return s
}

func TestSliceEndpoints(t *testing.T) {
	http := map[string]int32{"http": 8080}
	tests := []struct {
		name      string
		slices    []*discoveryv1.EndpointSlice
		portNames []string
		want      []string // pod:port...
		total     int
		noPod     int
	}{
		{
			name:      "ready endpoints, sorted by pod",
			slices:    []*discoveryv1.EndpointSlice{slice("s1", http, ep("b", "true", "false"), ep("a", "true", ""))},
			portNames: []string{"http"},
			want:      []string{"a:8080", "b:8080"},
			total:     2,
		},
		{
			name:      "nil ready means ready",
			slices:    []*discoveryv1.EndpointSlice{slice("s1", http, ep("a", "", ""))},
			portNames: []string{"http"},
			want:      []string{"a:8080"},
			total:     1,
		},
		{
			name:      "not ready and terminating are not chosen",
			slices:    []*discoveryv1.EndpointSlice{slice("s1", http, ep("a", "false", ""), ep("b", "true", "true"), ep("c", "true", "false"))},
			portNames: []string{"http"},
			want:      []string{"c:8080"},
			total:     3,
		},
		{
			name:      "endpoints without a pod are skipped",
			slices:    []*discoveryv1.EndpointSlice{slice("s1", http, ep("", "true", ""), ep("a", "true", ""))},
			portNames: []string{"http"},
			want:      []string{"a:8080"},
			total:     1,
			noPod:     1,
		},
		{
			name: "named targetPort resolved per pod comes through the slice",
			slices: []*discoveryv1.EndpointSlice{
				slice("s1", map[string]int32{"http": 8080}, ep("a", "true", "")),
				slice("s2", map[string]int32{"http": 9090}, ep("b", "true", "")),
			},
			portNames: []string{"http"},
			want:      []string{"a:8080", "b:9090"},
			total:     2,
		},
		{
			name:      "unnamed service port",
			slices:    []*discoveryv1.EndpointSlice{slice("s1", map[string]int32{"": 80}, ep("a", "true", ""))},
			portNames: []string{""},
			want:      []string{"a:80"},
			total:     1,
		},
		{
			name:      "several target ports",
			slices:    []*discoveryv1.EndpointSlice{slice("s1", map[string]int32{"http": 8080, "metrics": 9100}, ep("a", "true", ""))},
			portNames: []string{"metrics", "http"},
			want:      []string{"a:9100,8080"},
			total:     1,
		},
		{
			name:      "a slice without the port gives nothing for it",
			slices:    []*discoveryv1.EndpointSlice{slice("s1", map[string]int32{"other": 1}, ep("a", "true", ""))},
			portNames: []string{"http"},
			want:      nil,
			total:     1,
		},
		{
			name: "dual stack: one pod in two slices counts once",
			slices: []*discoveryv1.EndpointSlice{
				slice("v4", http, ep("a", "true", "")),
				slice("v6", http, ep("a", "true", "")),
			},
			portNames: []string{"http"},
			want:      []string{"a:8080"},
			total:     1,
		},
		{
			name: "terminating in any copy wins",
			slices: []*discoveryv1.EndpointSlice{
				slice("old", http, ep("a", "true", "false")),
				slice("new", http, ep("a", "false", "true")),
			},
			portNames: []string{"http"},
			want:      nil,
			total:     1,
		},
		{
			name:      "UDP slice port is not used",
			slices:    []*discoveryv1.EndpointSlice{udpSlice()},
			portNames: []string{"dns"},
			want:      nil,
			total:     1,
		},
		{
			name:      "no slices",
			portNames: []string{"http"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := sliceEndpoints("default", tt.slices, tt.portNames)
			if got := short(v.Ready); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ready = %q, want %q", got, tt.want)
			}
			if v.Total != tt.total || v.NoPod != tt.noPod {
				t.Errorf("total, noPod = %d, %d; want %d, %d", v.Total, v.NoPod, tt.total, tt.noPod)
			}
		})
	}
}

func udpSlice() *discoveryv1.EndpointSlice {
	s := slice("udp", nil, ep("a", "true", ""))
	s.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("dns"), Port: ptr.To(int32(53)), Protocol: ptr.To(corev1.ProtocolUDP)}}
	return s
}

func short(eps []endpoint) []string {
	var out []string
	for _, e := range eps {
		s := e.Pod + ":"
		for i, p := range e.Ports {
			if i > 0 {
				s += ","
			}
			s += strconv.Itoa(int(p))
		}
		out = append(out, s)
	}
	return out
}

type podOpt func(*corev1.Pod)

func pod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "main",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func notReady(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }
func pending(p *corev1.Pod)  { p.Status.Phase = corev1.PodPending }
func deleting(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)} }
func httpOn(port int32) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = port }
}

func TestPodEndpoints(t *testing.T) {
	tests := []struct {
		name         string
		pods         []*corev1.Pod
		remotes      []intstr.IntOrString
		requireReady bool
		want         []string
		total        int
	}{
		{
			name:         "ready running pods",
			pods:         []*corev1.Pod{pod("b"), pod("a")},
			remotes:      []intstr.IntOrString{intstr.FromInt32(80)},
			requireReady: true,
			want:         []string{"a:80", "b:80"},
			total:        2,
		},
		{
			name:         "not ready, pending and deleting pods are not chosen",
			pods:         []*corev1.Pod{pod("a", notReady), pod("b", pending), pod("c", deleting), pod("d")},
			remotes:      []intstr.IntOrString{intstr.FromInt32(80)},
			requireReady: true,
			want:         []string{"d:80"},
			total:        4,
		},
		{
			name:    "readiness not required (pod/NAME)",
			pods:    []*corev1.Pod{pod("a", notReady)},
			remotes: []intstr.IntOrString{intstr.FromInt32(80)},
			want:    []string{"a:80"},
			total:   1,
		},
		{
			name:         "named port resolved per pod",
			pods:         []*corev1.Pod{pod("a"), pod("b", httpOn(9090))},
			remotes:      []intstr.IntOrString{intstr.FromString("http")},
			requireReady: true,
			want:         []string{"a:8080", "b:9090"},
			total:        2,
		},
		{
			name:         "pod lacking the named port is not chosen",
			pods:         []*corev1.Pod{pod("a"), pod("b")},
			remotes:      []intstr.IntOrString{intstr.FromString("grpc")},
			requireReady: true,
			want:         nil,
			total:        2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := podEndpoints(tt.pods, tt.remotes, tt.requireReady)
			if got := short(v.Ready); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ready = %q, want %q", got, tt.want)
			}
			if v.Total != tt.total {
				t.Errorf("total = %d, want %d", v.Total, tt.total)
			}
		})
	}
}

func TestSinglePodView(t *testing.T) {
	remotes := []intstr.IntOrString{intstr.FromInt32(80)}
	tests := []struct {
		name     string
		pod      *corev1.Pod
		ready    int
		goneWord string
	}{
		{name: "running", pod: pod("a"), ready: 1},
		{name: "running but not ready still forwards, as kubectl does", pod: pod("a", notReady), ready: 1},
		{name: "pending waits", pod: pod("a", pending)},
		{name: "deleted", pod: nil, goneWord: "no longer exists"},
		{name: "terminating", pod: pod("a", deleting), goneWord: "terminating"},
		{name: "failed", pod: pod("a", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }), goneWord: "phase Failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, gone := singlePodView(tt.pod, "default", "a", remotes)
			if len(v.Ready) != tt.ready {
				t.Errorf("ready = %d, want %d", len(v.Ready), tt.ready)
			}
			if tt.goneWord == "" && gone != "" || tt.goneWord != "" && !contains(gone, tt.goneWord) {
				t.Errorf("gone = %q, want it to mention %q", gone, tt.goneWord)
			}
			if gone != "" && !contains(gone, "deploy/NAME or svc/NAME") {
				t.Errorf("gone = %q does not say how to follow replacements", gone)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	e := func(names ...string) []endpoint {
		var out []endpoint
		for _, n := range names {
			out = append(out, endpoint{Namespace: "default", Pod: n, Ports: []int32{80}})
		}
		return out
	}
	type step struct {
		cands []endpoint
		want  string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "alternates", steps: []step{{e("a", "b"), "a"}, {e("a", "b"), "b"}, {e("a", "b"), "a"}, {e("a", "b"), "b"}}},
		{name: "removed endpoint is skipped", steps: []step{{e("a", "b", "c"), "a"}, {e("b", "c"), "b"}, {e("c"), "c"}, {e("c"), "c"}}},
		{name: "removal of the last picked keeps the turn", steps: []step{{e("a", "b", "c"), "a"}, {e("a", "b", "c"), "b"}, {e("a", "c"), "c"}, {e("a", "c"), "a"}}},
		{name: "new endpoint joins the turn", steps: []step{{e("a", "c"), "a"}, {e("a", "b", "c"), "b"}, {e("a", "b", "c"), "c"}, {e("a", "b", "c"), "a"}}},
		{name: "empty", steps: []step{{nil, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rr roundRobin
			for i, s := range tt.steps {
				got, ok := rr.pick(s.cands)
				if ok != (s.want != "") || got.Pod != s.want {
					t.Fatalf("step %d: pick = %q, %v; want %q", i, got.Pod, ok, s.want)
				}
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	ready := []endpoint{
		{Namespace: "default", Pod: "a", Ports: []int32{80, 0}},
		{Namespace: "default", Pod: "b", Ports: []int32{80, 9100}},
		{Namespace: "default", Pod: "c", Ports: []int32{80, 9100}},
	}
	tests := []struct {
		name string
		pi   int
		skip map[string]bool
		want []string
	}{
		{name: "all have port 0", pi: 0, want: []string{"a", "b", "c"}},
		{name: "a lacks port 1", pi: 1, want: []string{"b", "c"}},
		{name: "tried ones are skipped", pi: 0, skip: map[string]bool{"default/b": true}, want: []string{"a", "c"}},
		{name: "out of range port", pi: 5, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range candidates(ready, tt.pi, tt.skip) {
				got = append(got, e.Pod)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("candidates = %q, want %q", got, tt.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
