package userspace

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-project/berth/internal/proxy"
)

// Metric names, exported so dashboards and tests spell them one way.
const (
	MetricConnections       = "berth_proxy_connections_total"
	MetricActiveConnections = "berth_proxy_active_connections"
	MetricDialFailures      = "berth_proxy_dial_failures_total"
	MetricBytes             = "berth_proxy_bytes_total"
	MetricSyncDuration      = "berth_proxy_sync_duration_seconds"
	MetricSyncs             = "berth_proxy_syncs_total"
)

// Direction label values of MetricBytes.
const (
	ToEndpoint = "to_endpoint"
	ToClient   = "to_client"
)

var backendLabels = []string{"service", "port", "protocol", "endpoint"}

type metrics struct {
	connections  *prometheus.CounterVec
	active       *prometheus.GaugeVec
	dialFailures *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	syncDuration prometheus.Histogram
	syncs        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricConnections,
			Help: "Connections (TCP) or sessions (UDP) proxied, per service port and endpoint.",
		}, backendLabels),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricActiveConnections,
			Help: "Connections (TCP) or sessions (UDP) open now, per service port and endpoint.",
		}, backendLabels),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDialFailures,
			Help: "Failed attempts to reach an endpoint, per service port and endpoint.",
		}, backendLabels),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricBytes,
			Help: "Payload bytes proxied, per service port, endpoint and direction (to_endpoint, to_client). TCP bytes are added when each direction of a connection ends.",
		}, append(backendLabels[:len(backendLabels):len(backendLabels)], "direction")),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricSyncDuration,
			Help:    "Time one sync took to apply recorded Service and EndpointSlice changes.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		syncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricSyncs,
			Help: "Syncs run (including periodic ones).",
		}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.active, m.dialFailures, m.bytes, m.syncDuration, m.syncs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return m, nil
}

// backendMetrics holds the series of one (service port, endpoint) pair,
// resolved once per connection so the data path does no label lookups and
// a connection that outlives its series (see forget) touches no registry.
type backendMetrics struct {
	connections, dialFailures prometheus.Counter
	active                    prometheus.Gauge
	toEndpoint, toClient      prometheus.Counter
}

func (m *metrics) backend(spn proxy.ServicePortName, endpoint string) backendMetrics {
	l := []string{spn.NamespacedName.String(), spn.Port, string(spn.Protocol), endpoint}
	return backendMetrics{
		connections:  m.connections.WithLabelValues(l...),
		dialFailures: m.dialFailures.WithLabelValues(l...),
		active:       m.active.WithLabelValues(l...),
		toEndpoint:   m.bytes.WithLabelValues(append(l, ToEndpoint)...),
		toClient:     m.bytes.WithLabelValues(append(l, ToClient)...),
	}
}

// forget drops the series of one endpoint of a service port, so series do
// not pile up as pods come and go. It deletes exact label values: a partial
// match scans every series, which at 10,000 Services took most of a sync.
func (m *metrics) forget(spn proxy.ServicePortName, endpoint string) {
	l := []string{spn.NamespacedName.String(), spn.Port, string(spn.Protocol), endpoint}
	m.connections.DeleteLabelValues(l...)
	m.active.DeleteLabelValues(l...)
	m.dialFailures.DeleteLabelValues(l...)
	m.bytes.DeleteLabelValues(append(l, ToEndpoint)...)
	m.bytes.DeleteLabelValues(append(l, ToClient)...)
}
