// Package service is the registry strategy for core/v1 Services: defaulting,
// validation, cluster IP and node port allocation at create and update (so
// that a bad or taken address is a 422 at once, as in Kubernetes), release on
// delete, and kubectl's columns.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/berth-project/berth/internal/alloc"
	"github.com/berth-project/berth/internal/registry"
)

// Config gives the strategy its allocators.
type Config struct {
	ClusterIPs *alloc.Allocator
	// ClusterIPRange is the range ClusterIPs hands out, for messages.
	ClusterIPRange *alloc.IPRange
	NodePorts      *alloc.Allocator
	Logger         *slog.Logger
}

// Kind returns the registry Kind for services.
func Kind(cfg Config) *registry.Kind {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &registry.Kind{
		GroupVersionKind: corev1.SchemeGroupVersion.WithKind("Service"),
		Resource:         "services", Singular: "service", ShortNames: []string{"svc"}, Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Service{} },
		NewList:    func() runtime.Object { return &corev1.ServiceList{} },
		Strategy:   &strategy{cfg: cfg}, ReturnDeletedObject: true,
		Subresources: []string{"proxy"},
	}
}

type strategy struct {
	cfg Config
}

func (*strategy) NameFunc() metavalidation.ValidateNameFunc { return metavalidation.NameIsDNS1035Label }

func (*strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	s := obj.(*corev1.Service)
	s.Status = corev1.ServiceStatus{}
	Default(s)
}

func (*strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	s, o := obj.(*corev1.Service), old.(*corev1.Service)
	s.Status = o.Status
	keepAllocated(s, o)
	Default(s)
}

// keepAllocated carries the cluster IP and node ports over from old when an
// update leaves them out, as Kubernetes does for `kubectl replace`.
func keepAllocated(s, o *corev1.Service) {
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	if s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) == 0 {
		s.Spec.ClusterIP, s.Spec.ClusterIPs = o.Spec.ClusterIP, append([]string(nil), o.Spec.ClusterIPs...)
	}
	if !needsNodePorts(s) && needsNodePorts(o) {
		// Leaving NodePort or LoadBalancer drops the ports the old type held.
		for i := range s.Spec.Ports {
			for _, op := range o.Spec.Ports {
				if s.Spec.Ports[i].NodePort == op.NodePort {
					s.Spec.Ports[i].NodePort = 0
				}
			}
		}
	}
	if needsNodePorts(s) && needsNodePorts(o) {
		for i := range s.Spec.Ports {
			if s.Spec.Ports[i].NodePort != 0 {
				continue
			}
			for _, op := range o.Spec.Ports {
				if op.Port == s.Spec.Ports[i].Port && protocolOf(op) == protocolOf(s.Spec.Ports[i]) {
					s.Spec.Ports[i].NodePort = op.NodePort
				}
			}
		}
	}
}

func protocolOf(p corev1.ServicePort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

func needsNodePorts(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
}

func needsClusterIP(s *corev1.Service) bool {
	return s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone
}

func (st *strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validate(obj.(*corev1.Service), st.cfg.ClusterIPRange)
}

func (st *strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	s, o := obj.(*corev1.Service), old.(*corev1.Service)
	errs := validate(s, st.cfg.ClusterIPRange)
	if needsClusterIP(o) && needsClusterIP(s) && s.Spec.ClusterIP != o.Spec.ClusterIP {
		errs = append(errs, field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), s.Spec.ClusterIPs, "may not change once set"))
	}
	if (o.Spec.ClusterIP == corev1.ClusterIPNone) != (s.Spec.ClusterIP == corev1.ClusterIPNone) && o.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), s.Spec.ClusterIPs, "may not change once set"))
	}
	return errs
}

func (*strategy) PrepareForStatusUpdate(_ context.Context, obj, old runtime.Object) {
	s, o := obj.(*corev1.Service), old.(*corev1.Service)
	s.Spec = o.Spec
}

func (*strategy) ValidateStatusUpdate(_ context.Context, obj, _ runtime.Object) field.ErrorList {
	return validateStatus(obj.(*corev1.Service))
}

// Owner identifies a Service in allocation keys: namespace/name/uid.
func Owner(s *corev1.Service) string { return s.Namespace + "/" + s.Name + "/" + string(s.UID) }

// Allocate claims the cluster IP and node ports obj needs and old did not hold.
func (st *strategy) Allocate(ctx context.Context, obj, old runtime.Object) (func(), error) {
	s := obj.(*corev1.Service)
	var o *corev1.Service
	if old != nil {
		o = old.(*corev1.Service)
	}
	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	who := Owner(s)
	if needsClusterIP(s) && (o == nil || !needsClusterIP(o) || o.Spec.ClusterIP != s.Spec.ClusterIP) {
		ipPath := field.NewPath("spec", "clusterIPs")
		if s.Spec.ClusterIP == "" {
			ip, err := st.cfg.ClusterIPs.AllocateNext(ctx, who)
			if err != nil {
				if errors.Is(err, alloc.ErrFull) {
					return nil, apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: range is full"))
				}
				return nil, apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: %w", err))
			}
			s.Spec.ClusterIP, s.Spec.ClusterIPs = ip, []string{ip}
		} else if err := st.cfg.ClusterIPs.Allocate(ctx, s.Spec.ClusterIP, who); err != nil {
			return nil, st.invalid(s, field.Invalid(ipPath, s.Spec.ClusterIPs, st.ipMessage(s.Spec.ClusterIP, err)))
		}
		ip := s.Spec.ClusterIP
		undo = append(undo, func() { st.release(st.cfg.ClusterIPs, ip, who) })
	}
	if needsNodePorts(s) {
		held := map[int32]bool{}
		if o != nil && needsNodePorts(o) {
			for _, p := range o.Spec.Ports {
				held[p.NodePort] = true
			}
		}
		claimed := map[int32]bool{}
		for i := range s.Spec.Ports {
			p := &s.Spec.Ports[i]
			if p.NodePort != 0 && (held[p.NodePort] || claimed[p.NodePort]) {
				continue
			}
			if p.NodePort == 0 {
				v, err := st.cfg.NodePorts.AllocateNext(ctx, who)
				if err != nil {
					rollback()
					return nil, apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: %w", err))
				}
				n, _ := strconv.Atoi(v)
				p.NodePort = int32(n)
			} else if err := st.cfg.NodePorts.Allocate(ctx, strconv.Itoa(int(p.NodePort)), who); err != nil {
				rollback()
				msg := "provided port is already allocated"
				if errors.Is(err, alloc.ErrNotInRange) {
					msg = "provided port is not in the valid range. The range of valid ports is " + st.cfg.NodePorts.Range().String()
				} else if !errors.Is(err, alloc.ErrAllocated) {
					return nil, apierrors.NewInternalError(err)
				}
				return nil, st.invalid(s, field.Invalid(field.NewPath("spec", "ports").Index(i).Child("nodePort"), p.NodePort, msg))
			}
			claimed[p.NodePort] = true
			port := strconv.Itoa(int(p.NodePort))
			undo = append(undo, func() { st.release(st.cfg.NodePorts, port, who) })
		}
	}
	return rollback, nil
}

func (st *strategy) ipMessage(ip string, err error) string {
	switch {
	case errors.Is(err, alloc.ErrNotInRange):
		return fmt.Sprintf("failed to allocate IP %s: provided IP is not in the valid range. The range of valid IPs is %s", ip, st.cfg.ClusterIPRange)
	case errors.Is(err, alloc.ErrAllocated):
		return fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", ip)
	}
	return fmt.Sprintf("failed to allocate IP %s: %v", ip, err)
}

func (st *strategy) invalid(s *corev1.Service, errs ...*field.Error) error {
	return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Service").GroupKind(), s.Name, errs)
}

func (st *strategy) release(a *alloc.Allocator, value, who string) {
	if err := a.Release(context.Background(), value, who); err != nil {
		st.cfg.Logger.Warn("release service allocation", "value", value, "owner", who, "err", err)
	}
}

// Commit frees what an update gave up.
func (st *strategy) Commit(_ context.Context, obj, old runtime.Object) {
	s, o := obj.(*corev1.Service), old.(*corev1.Service)
	who := Owner(o)
	if needsClusterIP(o) && (!needsClusterIP(s) || s.Spec.ClusterIP != o.Spec.ClusterIP) {
		st.release(st.cfg.ClusterIPs, o.Spec.ClusterIP, who)
	}
	if needsNodePorts(o) {
		keep := map[int32]bool{}
		if needsNodePorts(s) {
			for _, p := range s.Spec.Ports {
				keep[p.NodePort] = true
			}
		}
		for _, p := range o.Spec.Ports {
			if p.NodePort != 0 && !keep[p.NodePort] {
				st.release(st.cfg.NodePorts, strconv.Itoa(int(p.NodePort)), who)
			}
		}
	}
}

// Release frees everything a deleted Service held.
func (st *strategy) Release(_ context.Context, obj runtime.Object) {
	s := obj.(*corev1.Service)
	who := Owner(s)
	if needsClusterIP(s) && s.Spec.ClusterIP != "" {
		st.release(st.cfg.ClusterIPs, s.Spec.ClusterIP, who)
	}
	if needsNodePorts(s) {
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				st.release(st.cfg.NodePorts, strconv.Itoa(int(p.NodePort)), who)
			}
		}
	}
}
