package cluster

import (
	"reflect"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	body := []byte(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
process_open_fds 17
berth_proxy_active_connections{service="default/a",port="",protocol="TCP",endpoint="1.2.3.4:80"} 3
berth_proxy_active_connections{service="default/b",port="http",protocol="TCP",endpoint="1.2.3.5:80"} 4
berth_proxy_sync_duration_seconds_sum 0.5
weird{label="with } brace"} 2
bad_value x
`)
	got := ParseMetrics(body)
	want := map[string]float64{
		"go_goroutines": 42, "process_open_fds": 17, "berth_proxy_active_connections": 7,
		"berth_proxy_sync_duration_seconds_sum": 0.5, "weird": 2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMetrics = %v, want %v", got, want)
	}
}

func TestHasFlag(t *testing.T) {
	args := []string{"--pod-network", "loopback", "--disable=proxy"}
	for _, tt := range []struct {
		name string
		want bool
	}{{"--pod-network", true}, {"--disable", true}, {"--pod", false}, {"--agent-port", false}} {
		if got := hasFlag(args, tt.name); got != tt.want {
			t.Errorf("hasFlag(%q) = %v", tt.name, got)
		}
	}
}

func TestEndpointSliceShape(t *testing.T) {
	s := EndpointSlice("web", "web-bench", []string{"127.243.0.1", "127.243.0.2"}, SlicePort("http", 80))
	if s.Labels["kubernetes.io/service-name"] != "web" || s.Labels["endpointslice.kubernetes.io/managed-by"] != ManagedBy {
		t.Errorf("labels = %v", s.Labels)
	}
	if len(s.Endpoints) != 2 || !*s.Endpoints[0].Conditions.Ready || *s.Endpoints[1].Conditions.Terminating {
		t.Errorf("endpoints = %+v", s.Endpoints)
	}
}
