package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// LabelHeadless marks the EndpointSlices of headless Services, which no
// proxy handles; like kube-proxy, berth does not even watch them.
const LabelHeadless = v1.IsHeadlessService

// RunInformers watches Services and discovery.k8s.io/v1 EndpointSlices
// through client and feeds every event to h. It returns an error if the
// informers cannot be set up; otherwise it calls OnServicesSynced and
// OnEndpointSlicesSynced once the initial lists are in, and blocks until ctx
// is done, when it stops the informers, waits for their goroutines and
// returns nil. Resync re-delivers every object at that period (0: never);
// the change trackers drop re-deliveries that change nothing.
func RunInformers(ctx context.Context, client kubernetes.Interface, h Handler, resync time.Duration, log *slog.Logger) error {
	if client == nil {
		return errors.New("run proxy informers: nil Kubernetes client")
	}
	if h == nil {
		return errors.New("run proxy informers: nil handler")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Same selection as kube-proxy: Services another proxy claims, and the
	// slices of headless Services, never reach the handler.
	svcFactory := informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = "!" + LabelServiceProxyName
		}))
	epFactory := informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = "!" + LabelServiceProxyName + ",!" + LabelHeadless
		}))
	defer svcFactory.Shutdown()
	defer epFactory.Shutdown()

	svcInformer := svcFactory.Core().V1().Services().Informer()
	epInformer := epFactory.Discovery().V1().EndpointSlices().Informer()

	svcReg, err := svcInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if svc, ok := obj.(*v1.Service); ok {
				h.OnServiceAdd(svc)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			oldSvc, ok1 := oldObj.(*v1.Service)
			svc, ok2 := obj.(*v1.Service)
			if ok1 && ok2 {
				h.OnServiceUpdate(oldSvc, svc)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if svc, ok := obj.(*v1.Service); ok {
				h.OnServiceDelete(svc)
			} else {
				log.Warn("unexpected object in Service delete event", "type", fmt.Sprintf("%T", obj))
			}
		},
	})
	if err != nil {
		return fmt.Errorf("add Service event handler: %w", err)
	}
	epReg, err := epInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if s, ok := obj.(*discovery.EndpointSlice); ok {
				h.OnEndpointSliceAdd(s)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			oldS, ok1 := oldObj.(*discovery.EndpointSlice)
			s, ok2 := obj.(*discovery.EndpointSlice)
			if ok1 && ok2 {
				h.OnEndpointSliceUpdate(oldS, s)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if s, ok := obj.(*discovery.EndpointSlice); ok {
				h.OnEndpointSliceDelete(s)
			} else {
				log.Warn("unexpected object in EndpointSlice delete event", "type", fmt.Sprintf("%T", obj))
			}
		},
	})
	if err != nil {
		return fmt.Errorf("add EndpointSlice event handler: %w", err)
	}

	svcFactory.Start(ctx.Done())
	epFactory.Start(ctx.Done())
	// The registrations' HasSynced, not the informers': it also waits until
	// the handler itself has seen every object of the initial list.
	if !cache.WaitForCacheSync(ctx.Done(), svcReg.HasSynced) {
		return nil // ctx ended before the first list arrived
	}
	h.OnServicesSynced()
	if !cache.WaitForCacheSync(ctx.Done(), epReg.HasSynced) {
		return nil
	}
	h.OnEndpointSlicesSynced()
	<-ctx.Done()
	return nil
}
