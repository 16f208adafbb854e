// Package endpoints is the registry strategy for core/v1 Endpoints, which berth
// mirrors from EndpointSlices for older clients.
package endpoints

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"

	"github.com/berth-project/berth/internal/registry"
)

// Kind returns the registry Kind for endpoints.
func Kind() *registry.Kind {
	return &registry.Kind{
		GroupVersionKind: corev1.SchemeGroupVersion.WithKind("Endpoints"),
		Resource:         "endpoints", Singular: "endpoints", ShortNames: []string{"ep"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Endpoints{} },
		NewList:    func() runtime.Object { return &corev1.EndpointsList{} },
		Strategy:   strategy{}, AllowCreateOnUpdate: true,
	}
}

type strategy struct{}

func (strategy) NameFunc() metavalidation.ValidateNameFunc { return metavalidation.NameIsDNSSubdomain }

func (strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	defaults(obj.(*corev1.Endpoints))
}
func (strategy) PrepareForUpdate(_ context.Context, obj, _ runtime.Object) {
	defaults(obj.(*corev1.Endpoints))
}

func defaults(e *corev1.Endpoints) {
	for i := range e.Subsets {
		for j := range e.Subsets[i].Ports {
			if e.Subsets[i].Ports[j].Protocol == "" {
				e.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
			}
		}
	}
}

func (strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validate(obj.(*corev1.Endpoints))
}

func (strategy) ValidateUpdate(_ context.Context, obj, _ runtime.Object) field.ErrorList {
	return validate(obj.(*corev1.Endpoints))
}

func validate(e *corev1.Endpoints) field.ErrorList {
	var errs field.ErrorList
	for i, ss := range e.Subsets {
		p := field.NewPath("subsets").Index(i)
		check := func(addrs []corev1.EndpointAddress, name string) {
			for j, a := range addrs {
				if netutils.ParseIPSloppy(a.IP) == nil {
					errs = append(errs, field.Invalid(p.Child(name).Index(j).Child("ip"), a.IP, "must be a valid IP address"))
				}
			}
		}
		check(ss.Addresses, "addresses")
		check(ss.NotReadyAddresses, "notReadyAddresses")
		for j, port := range ss.Ports {
			pp := p.Child("ports").Index(j)
			for _, msg := range validation.IsValidPortNum(int(port.Port)) {
				errs = append(errs, field.Invalid(pp.Child("port"), port.Port, msg))
			}
			switch port.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			default:
				errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, []string{"SCTP", "TCP", "UDP"}))
			}
		}
	}
	return errs
}

func (strategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
		{Name: "Endpoints", Type: "string", Description: "Endpoints of the service"},
		{Name: "Age", Type: "string", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
	}
}

func (strategy) Row(obj runtime.Object, now time.Time) []interface{} {
	e := obj.(*corev1.Endpoints)
	return []interface{}{e.Name, Format(e, 3), registry.Age(e.CreationTimestamp, now)}
}

// Format lists up to max ready ip:port pairs as kubectl does ("<none>" when
// empty, "+ N more..." beyond max).
func Format(e *corev1.Endpoints, max int) string {
	var list []string
	count := 0
	more := false
	for _, ss := range e.Subsets {
		ports := ss.Ports
		if len(ports) == 0 {
			ports = []corev1.EndpointPort{{}}
		}
		for _, port := range ports {
			for _, a := range ss.Addresses {
				if count >= max {
					more = true
					count++
					continue
				}
				hostPort := a.IP
				if port.Port != 0 {
					hostPort = netJoin(a.IP, port.Port)
				}
				list = append(list, hostPort)
				count++
			}
		}
	}
	if len(list) == 0 {
		return "<none>"
	}
	s := strings.Join(list, ",")
	if more {
		s += fmt.Sprintf(" + %d more...", count-max)
	}
	return s
}

func netJoin(ip string, port int32) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}
