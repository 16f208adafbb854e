package replicaset

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// eventRecorder forwards events to the recorder of the broadcaster that Run
// owns. The broadcaster starts goroutines, so it may only exist inside Run;
// events recorded outside Run are dropped because there is no sink for them.
// Tests set a record.FakeRecorder instead.
type eventRecorder struct {
	mu sync.RWMutex
	r  record.EventRecorder // nil outside Run; protected by mu
}

var _ record.EventRecorder = (*eventRecorder)(nil)

func (e *eventRecorder) set(r record.EventRecorder) {
	e.mu.Lock()
	e.r = r
	e.mu.Unlock()
}

func (e *eventRecorder) get() record.EventRecorder {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.r
}

func (e *eventRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	if r := e.get(); r != nil {
		r.Event(obj, eventtype, reason, message)
	}
}

func (e *eventRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	if r := e.get(); r != nil {
		r.Eventf(obj, eventtype, reason, messageFmt, args...)
	}
}

func (e *eventRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	if r := e.get(); r != nil {
		r.AnnotatedEventf(obj, annotations, eventtype, reason, messageFmt, args...)
	}
}
