package endpointslice

import (
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func TestEndpointSliceRow(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ep := func(addrs ...string) discoveryv1.Endpoint { return discoveryv1.Endpoint{Addresses: addrs} }
	tests := []struct {
		name      string
		ports     []discoveryv1.EndpointPort
		endpoints []discoveryv1.Endpoint
		wantPorts string
		wantEps   string
	}{
		{"empty", nil, nil, "<unset>", "<unset>"},
		{"one of each", []discoveryv1.EndpointPort{{Port: ptr(int32(8080))}}, []discoveryv1.Endpoint{ep("10.244.0.5")}, "8080", "10.244.0.5"},
		{"port without a number shows its name", []discoveryv1.EndpointPort{{Name: ptr("http")}}, nil, "http", "<unset>"},
		{"port with neither is a wildcard", []discoveryv1.EndpointPort{{}}, nil, "*", "<unset>"},
		{"more than three", []discoveryv1.EndpointPort{{Port: ptr(int32(1))}, {Port: ptr(int32(2))}, {Port: ptr(int32(3))}, {Port: ptr(int32(4))}, {Port: ptr(int32(5))}},
			[]discoveryv1.Endpoint{ep("10.0.0.1", "10.0.0.2"), ep("10.0.0.3"), ep("10.0.0.4")},
			"1,2,3 + 2 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."},
		{"exactly three", []discoveryv1.EndpointPort{{Port: ptr(int32(1))}, {Port: ptr(int32(2))}, {Port: ptr(int32(3))}},
			[]discoveryv1.Endpoint{ep("10.0.0.1"), ep("10.0.0.2"), ep("10.0.0.3")}, "1,2,3", "10.0.0.1,10.0.0.2,10.0.0.3"},
	}
	st := strategy{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", CreationTimestamp: metav1.NewTime(now.Add(-90 * time.Second))},
				AddressType: discoveryv1.AddressTypeIPv4, Ports: tt.ports, Endpoints: tt.endpoints,
			}
			row := st.Row(s, now)
			want := []interface{}{"web-abc", "IPv4", tt.wantPorts, tt.wantEps, "90s"}
			if len(row) != len(st.Columns()) {
				t.Fatalf("%d cells for %d columns", len(row), len(st.Columns()))
			}
			for i := range want {
				if row[i] != want[i] {
					t.Errorf("cell %d = %q, want %q", i, row[i], want[i])
				}
			}
		})
	}
}
