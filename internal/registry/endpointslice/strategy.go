// Package endpointslice is the registry strategy for discovery.k8s.io/v1
// EndpointSlices.
package endpointslice

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"

	"github.com/berth-project/berth/internal/registry"
)

// Limits Kubernetes validates.
const (
	maxEndpoints = 1000
	maxPorts     = 20000
	maxAddresses = 100
)

// Kind returns the registry Kind for endpointslices.
func Kind() *registry.Kind {
	return &registry.Kind{
		GroupVersionKind: discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"),
		Resource:         "endpointslices", Singular: "endpointslice",
		Namespaced: true,
		New:        func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		NewList:    func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Strategy:   strategy{},
	}
}

type strategy struct{}

func (strategy) NameFunc() metavalidation.ValidateNameFunc { return metavalidation.NameIsDNSSubdomain }

func (strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	defaults(obj.(*discoveryv1.EndpointSlice))
}
func (strategy) PrepareForUpdate(_ context.Context, obj, _ runtime.Object) {
	defaults(obj.(*discoveryv1.EndpointSlice))
}

func defaults(s *discoveryv1.EndpointSlice) {
	for i := range s.Ports {
		if s.Ports[i].Protocol == nil {
			tcp := "TCP"
			s.Ports[i].Protocol = (*corev1.Protocol)(&tcp)
		}
	}
}

func (strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validate(obj.(*discoveryv1.EndpointSlice))
}

func (strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	s, o := obj.(*discoveryv1.EndpointSlice), old.(*discoveryv1.EndpointSlice)
	errs := validate(s)
	if s.AddressType != o.AddressType {
		errs = append(errs, field.Invalid(field.NewPath("addressType"), s.AddressType, "field is immutable"))
	}
	return errs
}

func validate(s *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	case "":
		errs = append(errs, field.Required(field.NewPath("addressType"), ""))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), s.AddressType, []string{"FQDN", "IPv4", "IPv6"}))
	}
	ep := field.NewPath("endpoints")
	if len(s.Endpoints) > maxEndpoints {
		errs = append(errs, field.TooMany(ep, len(s.Endpoints), maxEndpoints))
	}
	for i, e := range s.Endpoints {
		p := ep.Index(i)
		if len(e.Addresses) == 0 {
			errs = append(errs, field.Required(p.Child("addresses"), "must contain at least 1 address"))
		} else if len(e.Addresses) > maxAddresses {
			errs = append(errs, field.TooMany(p.Child("addresses"), len(e.Addresses), maxAddresses))
		}
		for j, a := range e.Addresses {
			ap := p.Child("addresses").Index(j)
			switch s.AddressType {
			case discoveryv1.AddressTypeIPv4:
				if ip := netutils.ParseIPSloppy(a); ip == nil || ip.To4() == nil {
					errs = append(errs, field.Invalid(ap, a, "must be a valid IPv4 address"))
				}
			case discoveryv1.AddressTypeIPv6:
				if ip := netutils.ParseIPSloppy(a); ip == nil || ip.To4() != nil {
					errs = append(errs, field.Invalid(ap, a, "must be a valid IPv6 address"))
				}
			case discoveryv1.AddressTypeFQDN:
				for _, msg := range validation.IsFullyQualifiedDomainName(ap, a) {
					errs = append(errs, msg)
				}
			}
		}
		if e.NodeName != nil {
			for _, msg := range validation.IsDNS1123Subdomain(*e.NodeName) {
				errs = append(errs, field.Invalid(p.Child("nodeName"), *e.NodeName, msg))
			}
		}
		if e.Hostname != nil {
			for _, msg := range validation.IsDNS1123Label(*e.Hostname) {
				errs = append(errs, field.Invalid(p.Child("hostname"), *e.Hostname, msg))
			}
		}
	}
	pp := field.NewPath("ports")
	if len(s.Ports) > maxPorts {
		errs = append(errs, field.TooMany(pp, len(s.Ports), maxPorts))
	}
	names := map[string]bool{}
	for i, port := range s.Ports {
		p := pp.Index(i)
		if port.Name != nil {
			if names[*port.Name] {
				errs = append(errs, field.Duplicate(p.Child("name"), *port.Name))
			}
			names[*port.Name] = true
			if *port.Name != "" {
				for _, msg := range validation.IsDNS1123Label(*port.Name) {
					errs = append(errs, field.Invalid(p.Child("name"), *port.Name, msg))
				}
			}
		}
		if port.Port != nil {
			for _, msg := range validation.IsValidPortNum(int(*port.Port)) {
				errs = append(errs, field.Invalid(p.Child("port"), *port.Port, msg))
			}
		}
		if port.Protocol != nil {
			switch *port.Protocol {
			case "TCP", "UDP", "SCTP":
			default:
				errs = append(errs, field.NotSupported(p.Child("protocol"), *port.Protocol, []string{"SCTP", "TCP", "UDP"}))
			}
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(s.Labels, field.NewPath("metadata", "labels"))...)
	return errs
}

func (strategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
		{Name: "AddressType", Type: "string", Description: "addressType specifies the type of address carried by this EndpointSlice."},
		{Name: "Ports", Type: "string", Description: "ports specifies the list of network ports exposed by each endpoint in this slice."},
		{Name: "Endpoints", Type: "string", Description: "endpoints is a list of unique endpoints in this slice."},
		{Name: "Age", Type: "string", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
	}
}

func (strategy) Row(obj runtime.Object, now time.Time) []interface{} {
	s := obj.(*discoveryv1.EndpointSlice)
	return []interface{}{s.Name, string(s.AddressType), formatPorts(s.Ports), formatEndpoints(s.Endpoints, 3), registry.Age(s.CreationTimestamp, now)}
}

// formatPorts is kubectl's PORTS column: up to three ports (a port without
// a number shows its name, or "*"), then "+ N more...".
func formatPorts(ports []discoveryv1.EndpointPort) string {
	if len(ports) == 0 {
		return "<unset>"
	}
	var out []string
	for _, p := range ports {
		if len(out) == 3 {
			return strings.Join(out, ",") + fmt.Sprintf(" + %d more...", len(ports)-3)
		}
		switch {
		case p.Port != nil:
			out = append(out, strconv.Itoa(int(*p.Port)))
		case p.Name != nil:
			out = append(out, *p.Name)
		default:
			out = append(out, "*")
		}
	}
	return strings.Join(out, ",")
}

func formatEndpoints(eps []discoveryv1.Endpoint, max int) string {
	var list []string
	count := 0
	for _, e := range eps {
		for _, a := range e.Addresses {
			if count < max {
				list = append(list, a)
			}
			count++
		}
	}
	if len(list) == 0 {
		return "<unset>"
	}
	s := strings.Join(list, ",")
	if count > max {
		s += fmt.Sprintf(" + %d more...", count-max)
	}
	return s
}
