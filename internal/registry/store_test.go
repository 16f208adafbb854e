package registry_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/storage"
)

func TestCreateSetsSystemMetadata(t *testing.T) {
	e := newEnv(t)
	before := time.Now().Add(-time.Second)
	in := newPod("web", withLabels("app", "web"))
	in.UID = "client-chosen"
	in.Generation = 7
	in.CreationTimestamp = metav1.NewTime(time.Unix(1000, 0))
	in.Status.Phase = corev1.PodRunning // clients may not set status on create
	p := e.createPod("default", in)

	if p.UID == "" || p.UID == "client-chosen" {
		t.Errorf("uid = %q, want a server-assigned UUID", p.UID)
	}
	if ct := p.CreationTimestamp.Time; ct.Before(before) || ct.After(time.Now().Add(time.Second)) {
		t.Errorf("creationTimestamp = %v, want about now", ct)
	}
	if p.Generation != 1 {
		t.Errorf("generation = %d, want 1", p.Generation)
	}
	if p.Namespace != "default" || p.Kind != "Pod" || p.APIVersion != "v1" {
		t.Errorf("namespace %q kind %q apiVersion %q", p.Namespace, p.Kind, p.APIVersion)
	}
	if p.Status.Phase != corev1.PodPending || p.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("status = %+v, want phase Pending, qosClass BestEffort", p.Status)
	}
	// Defaulting ran.
	if p.Spec.RestartPolicy != corev1.RestartPolicyAlways || *p.Spec.TerminationGracePeriodSeconds != 30 ||
		p.Spec.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent || p.Spec.ServiceAccountName != "default" {
		t.Errorf("defaults missing: %+v", p.Spec)
	}
	// The resourceVersion is the etcd revision of the write, and is not stored.
	rv, err := strconv.ParseInt(p.ResourceVersion, 10, 64)
	if err != nil || rv <= 0 {
		t.Fatalf("resourceVersion %q is not a positive revision", p.ResourceVersion)
	}
	resp, err := testEtcd.Client().Get(e.ctx, e.prefix+"/core/pods/default/web")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get: %v %v", resp, err)
	}
	if resp.Kvs[0].ModRevision != rv {
		t.Errorf("resourceVersion %d, etcd mod revision %d", rv, resp.Kvs[0].ModRevision)
	}
	var stored map[string]interface{}
	if err := json.Unmarshal(resp.Kvs[0].Value, &stored); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored["metadata"].(map[string]interface{})["resourceVersion"]; ok {
		t.Error("the stored object carries a resourceVersion")
	}
	if stored["kind"] != "Pod" || stored["apiVersion"] != "v1" {
		t.Errorf("stored kind %v apiVersion %v", stored["kind"], stored["apiVersion"])
	}
	got := e.getPod("default", "web")
	if got.ResourceVersion != p.ResourceVersion || got.UID != p.UID {
		t.Errorf("get returned rv %s uid %s, create returned rv %s uid %s", got.ResourceVersion, got.UID, p.ResourceVersion, p.UID)
	}
}

func TestCreateRejects(t *testing.T) {
	e := newEnv(t)
	e.createPod("default", newPod("taken"))

	_, err := e.pods.Create(e.ctx, "default", newPod("taken"), registry.CreateOptions{})
	wantStatus(t, err, http.StatusConflict, metav1.StatusReasonAlreadyExists, `pods "taken" already exists`)

	withRV := newPod("rv")
	withRV.ResourceVersion = "12"
	_, err = e.pods.Create(e.ctx, "default", withRV, registry.CreateOptions{})
	wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "resourceVersion should not be set on objects to be created")

	elsewhere := newPod("elsewhere")
	elsewhere.Namespace = "other"
	_, err = e.pods.Create(e.ctx, "default", elsewhere, registry.CreateOptions{})
	wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "does not match the namespace")

	_, err = e.pods.Create(e.ctx, "nope", newPod("lost"), registry.CreateOptions{})
	wantStatus(t, err, http.StatusNotFound, metav1.StatusReasonNotFound, `namespaces "nope" not found`)
}

func TestCreateInvalidHasFieldCauses(t *testing.T) {
	e := newEnv(t)
	bad := newPod("Bad_Name", func(p *corev1.Pod) {
		p.Spec.RestartPolicy = "Sometimes"
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "web", Image: " spaced "})
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 70000}}
	})
	_, err := e.pods.Create(e.ctx, "default", bad, registry.CreateOptions{})
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, `Pod "Bad_Name" is invalid`)
	if st.Details == nil || st.Details.Kind != "Pod" || st.Details.Name != "Bad_Name" {
		t.Fatalf("details = %+v", st.Details)
	}
	for _, c := range []struct{ field, msg string }{
		{"metadata.name", "a lowercase RFC 1123 subdomain"},
		{"spec.restartPolicy", `Unsupported value: "Sometimes"`},
		{"spec.containers[1].name", "Duplicate value"},
		{"spec.containers[1].image", "must not have leading or trailing whitespace"},
		{"spec.containers[0].ports[0].containerPort", "must be between 1 and 65535"},
	} {
		if !hasCause(st, c.field, c.msg) {
			t.Errorf("no cause for %s containing %q in %+v", c.field, c.msg, st.Details.Causes)
		}
	}
	empty := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}
	_, err = e.pods.Create(e.ctx, "default", empty, registry.CreateOptions{})
	st = wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "spec.containers: Required value")
	if !hasCause(st, "spec.containers", "Required value") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	_, err = e.pods.Create(e.ctx, "default", &corev1.Pod{}, registry.CreateOptions{})
	st = wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "is invalid")
	if !hasCause(st, "metadata.name", "name or generateName is required") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
}

func TestCreateGenerateName(t *testing.T) {
	e := newEnv(t)
	p := newPod("")
	p.GenerateName = "web-"
	got := e.createPod("default", p)
	if !strings.HasPrefix(got.Name, "web-") || len(got.Name) != len("web-")+5 {
		t.Fatalf("generated name %q", got.Name)
	}
	if strings.ContainsAny(got.Name[4:], "aeiou013") {
		t.Errorf("suffix %q uses characters Kubernetes leaves out", got.Name[4:])
	}
	// A long base is cut so that the name stays a valid label.
	long := newPod("")
	long.GenerateName = strings.Repeat("a", 70)
	got = e.createPod("default", long)
	if len(got.Name) != 63 {
		t.Errorf("generated name %q has length %d, want 63", got.Name, len(got.Name))
	}
}

func TestCreateGenerateNameRetriesOnCollision(t *testing.T) {
	hook := &createHook{match: "/core/pods/", intercept: func(n int, _ string) error {
		if n < 3 {
			return storage.ErrExists // the generated name was taken
		}
		return nil
	}}
	e := newEnv(t, withStorage(func(s storage.Interface) storage.Interface { hook.Interface = s; return hook }))
	p := newPod("")
	p.GenerateName = "retry-"
	got := e.createPod("default", p)
	keys := hook.keys()
	if len(keys) != 4 {
		t.Fatalf("%d create attempts (%v), want 4", len(keys), keys)
	}
	if !strings.HasSuffix(keys[3], "/"+got.Name) {
		t.Errorf("stored under %s, returned name %s", keys[3], got.Name)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			t.Errorf("name %s was tried twice", k)
		}
		seen[k] = true
	}
	e.getPod("default", got.Name)

	// When every attempt collides, the client gets AlreadyExists.
	always := &createHook{match: "/core/pods/", intercept: func(int, string) error { return storage.ErrExists }}
	e2 := newEnv(t, withStorage(func(s storage.Interface) storage.Interface { always.Interface = s; return always }))
	p = newPod("")
	p.GenerateName = "retry-"
	_, err := e2.pods.Create(e2.ctx, "default", p, registry.CreateOptions{})
	wantStatus(t, err, http.StatusConflict, metav1.StatusReasonAlreadyExists, "already exists")
	if n := len(always.keys()); n != 8 {
		t.Errorf("%d attempts before giving up, want 8 as Kubernetes", n)
	}
	// A collision on a fixed name is not retried.
	fixed := &createHook{match: "/core/pods/", intercept: func(int, string) error { return storage.ErrExists }}
	e3 := newEnv(t, withStorage(func(s storage.Interface) storage.Interface { fixed.Interface = s; return fixed }))
	_, err = e3.pods.Create(e3.ctx, "default", newPod("fixed"), registry.CreateOptions{})
	wantStatus(t, err, http.StatusConflict, metav1.StatusReasonAlreadyExists, `pods "fixed" already exists`)
	if n := len(fixed.keys()); n != 1 {
		t.Errorf("%d attempts for a fixed name, want 1", n)
	}
}

func TestCreateDryRun(t *testing.T) {
	e := newEnv(t)
	obj, err := e.pods.Create(e.ctx, "default", newPod("dry"), registry.CreateOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if p := obj.(*corev1.Pod); p.UID == "" || p.Spec.RestartPolicy == "" {
		t.Errorf("dry run result not prepared: %+v", p)
	}
	if _, err := e.pods.Get(e.ctx, "default", "dry"); !apierrors.IsNotFound(err) {
		t.Fatalf("dry run stored the pod: %v", err)
	}
}

func TestCreateInTerminatingNamespaceIsForbidden(t *testing.T) {
	e := newEnv(t)
	e.createNamespace("doomed")
	if _, gone, err := e.namespaces.Delete(e.ctx, "", "doomed", nil, false); err != nil || gone {
		t.Fatalf("delete namespace: gone=%v err=%v", gone, err)
	}
	_, err := e.pods.Create(e.ctx, "doomed", newPod("late"), registry.CreateOptions{})
	// As Kubernetes' NamespaceLifecycle admission: the error names the
	// object being created and carries the NamespaceTerminating cause that
	// controllers look for.
	st := wantStatus(t, err, http.StatusForbidden, metav1.StatusReasonForbidden,
		`pods "late" is forbidden: unable to create new content in namespace doomed because it is being terminated`)
	if !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		t.Errorf("no %s cause in %+v", corev1.NamespaceTerminatingCause, st.Details)
	}
}

func TestGetNotFound(t *testing.T) {
	e := newEnv(t)
	_, err := e.pods.Get(e.ctx, "default", "ghost")
	st := wantStatus(t, err, http.StatusNotFound, metav1.StatusReasonNotFound, `pods "ghost" not found`)
	if st.Details == nil || st.Details.Name != "ghost" || st.Details.Kind != "pods" {
		t.Errorf("details %+v", st.Details)
	}
	// A pod of the same name in another namespace is another object.
	e.createPod("other", newPod("ghost"))
	if _, err := e.pods.Get(e.ctx, "default", "ghost"); !apierrors.IsNotFound(err) {
		t.Errorf("get default/ghost: %v", err)
	}
	_, err = e.namespaces.Get(e.ctx, "", "ghost")
	wantStatus(t, err, http.StatusNotFound, metav1.StatusReasonNotFound, `namespaces "ghost" not found`)
}

func TestUpdateConflictOnStaleResourceVersion(t *testing.T) {
	e := newEnv(t)
	p := e.createPod("default", newPod("web"))
	first := p.DeepCopy()
	first.Labels = map[string]string{"v": "1"}
	if _, _, err := e.pods.Update(e.ctx, "default", "web", first, registry.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := p.DeepCopy()
	stale.Labels = map[string]string{"v": "2"}
	_, _, err := e.pods.Update(e.ctx, "default", "web", stale, registry.UpdateOptions{})
	wantStatus(t, err, http.StatusConflict, metav1.StatusReasonConflict,
		`Operation cannot be fulfilled on pods "web": the object has been modified; please apply your changes to the latest version and try again`)
	if got := e.getPod("default", "web"); got.Labels["v"] != "1" {
		t.Errorf("the stale update was applied: %v", got.Labels)
	}

	wrongUID := e.getPod("default", "web")
	wrongUID.UID = "someone-else"
	wrongUID.ResourceVersion = ""
	_, _, err = e.pods.Update(e.ctx, "default", "web", wrongUID, registry.UpdateOptions{})
	wantStatus(t, err, http.StatusConflict, metav1.StatusReasonConflict, "Precondition failed: UID in precondition")

	renamed := e.getPod("default", "web")
	renamed.Name = "other"
	_, _, err = e.pods.Update(e.ctx, "default", "web", renamed, registry.UpdateOptions{})
	wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "does not match the name on the URL")

	_, _, err = e.pods.Update(e.ctx, "default", "missing", newPod("missing"), registry.UpdateOptions{})
	wantStatus(t, err, http.StatusNotFound, metav1.StatusReasonNotFound, `pods "missing" not found`)
}

func TestUpdateUnconditional(t *testing.T) {
	e := newEnv(t)
	p := e.createPod("default", newPod("web"))
	// Someone else writes in between; an update without a resourceVersion
	// still goes through, as Kubernetes allows for pods.
	bump := p.DeepCopy()
	bump.Labels = map[string]string{"by": "other"}
	if _, _, err := e.pods.Update(e.ctx, "default", "web", bump, registry.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mine := p.DeepCopy()
	mine.ResourceVersion = ""
	mine.Labels = map[string]string{"by": "me"}
	obj, created, err := e.pods.Update(e.ctx, "default", "web", mine, registry.UpdateOptions{})
	if err != nil || created {
		t.Fatalf("unconditional update: created=%v err=%v", created, err)
	}
	out := obj.(*corev1.Pod)
	if out.Labels["by"] != "me" || out.ResourceVersion == p.ResourceVersion || out.UID != p.UID {
		t.Errorf("update result %+v", out.ObjectMeta)
	}
}

func TestUpdateNoOpKeepsResourceVersion(t *testing.T) {
	e := newEnv(t)
	p := e.createPod("default", newPod("web", withLabels("a", "b")))
	before := e.revision()
	obj, _, err := e.pods.Update(e.ctx, "default", "web", p.DeepCopy(), registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*corev1.Pod); got.ResourceVersion != p.ResourceVersion || got.Generation != 1 {
		t.Errorf("no-op update changed rv %s→%s generation %d", p.ResourceVersion, got.ResourceVersion, got.Generation)
	}
	// Leaving out what defaulting fills in is no change either.
	sparse := newPod("web", withLabels("a", "b"))
	sparse.ResourceVersion = p.ResourceVersion
	obj, _, err = e.pods.Update(e.ctx, "default", "web", sparse, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.(*corev1.Pod); got.ResourceVersion != p.ResourceVersion {
		t.Errorf("update with defaults left out changed rv %s→%s", p.ResourceVersion, got.ResourceVersion)
	}
	if after := e.revision(); after != before {
		t.Errorf("no-op updates wrote to etcd: revision %d→%d", before, after)
	}
}

func TestUpdateGenerationFollowsSpec(t *testing.T) {
	e := newEnv(t)
	p := e.createPod("default", newPod("web"))
	p.Labels = map[string]string{"x": "y"}
	p.Annotations = map[string]string{"note": "metadata only"}
	obj, _, err := e.pods.Update(e.ctx, "default", "web", p, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p = obj.(*corev1.Pod)
	if p.Generation != 1 {
		t.Fatalf("metadata change bumped generation to %d", p.Generation)
	}
	p.Spec.Containers[0].Image = "registry.k8s.io/e2e-test-images/agnhost:2.54"
	obj, _, err = e.pods.Update(e.ctx, "default", "web", p, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p = obj.(*corev1.Pod)
	if p.Generation != 2 {
		t.Fatalf("spec change left generation at %d, want 2", p.Generation)
	}
	// Clients cannot set the generation themselves.
	p.Generation = 10
	obj, _, err = e.pods.Update(e.ctx, "default", "web", p, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g := obj.(*corev1.Pod).Generation; g != 2 {
		t.Fatalf("client-set generation gave %d, want 2", g)
	}
	// A status update never bumps it.
	st := obj.(*corev1.Pod)
	st.Status.Phase = corev1.PodRunning
	obj, _, err = e.pods.Update(e.ctx, "default", "web", st, registry.UpdateOptions{Subresource: "status"})
	if err != nil {
		t.Fatal(err)
	}
	if g := obj.(*corev1.Pod).Generation; g != 2 {
		t.Fatalf("status update changed generation to %d", g)
	}
	// A forbidden pod spec change is refused as Kubernetes refuses it.
	bad := obj.(*corev1.Pod)
	bad.Spec.RestartPolicy = corev1.RestartPolicyNever
	_, _, err = e.pods.Update(e.ctx, "default", "web", bad, registry.UpdateOptions{})
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "pod updates may not change fields other than")
}

func TestUpdateStatusSubresource(t *testing.T) {
	e := newEnv(t)
	p := e.createPod("default", newPod("web", onNode("n1")))
	want := p.Spec.DeepCopy()

	up := p.DeepCopy()
	up.Spec.Containers[0].Image = "changed-by-status-writer"
	up.Spec.NodeName = "elsewhere"
	up.Status.Phase = corev1.PodRunning
	up.Status.PodIP = "10.244.0.5"
	up.Status.PodIPs = []corev1.PodIP{{IP: "10.244.0.5"}}
	obj, _, err := e.pods.Update(e.ctx, "default", "web", up, registry.UpdateOptions{Subresource: "status"})
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*corev1.Pod)
	if got.Status.Phase != corev1.PodRunning || got.Status.PodIP != "10.244.0.5" {
		t.Errorf("status not updated: %+v", got.Status)
	}
	if got.Spec.Containers[0].Image != want.Containers[0].Image || got.Spec.NodeName != "n1" {
		t.Errorf("status update changed the spec: image %q node %q", got.Spec.Containers[0].Image, got.Spec.NodeName)
	}
	// The main resource carries status over: a PUT cannot change it.
	main := got.DeepCopy()
	main.Status.Phase = corev1.PodFailed
	main.Status.PodIP = ""
	main.Labels = map[string]string{"touched": "yes"}
	obj, _, err = e.pods.Update(e.ctx, "default", "web", main, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got = obj.(*corev1.Pod)
	if got.Status.Phase != corev1.PodRunning || got.Status.PodIP != "10.244.0.5" || got.Labels["touched"] != "yes" {
		t.Errorf("main update: status %+v labels %v", got.Status, got.Labels)
	}
	// Status is validated.
	bad := got.DeepCopy()
	bad.Status.Phase = "Sleeping"
	_, _, err = e.pods.Update(e.ctx, "default", "web", bad, registry.UpdateOptions{Subresource: "status"})
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "is invalid")
	if !hasCause(st, "status.phase", "Unsupported value") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	// Kinds without a status subresource refuse it.
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "ev"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web"}}
	if _, err := e.events.Create(e.ctx, "default", ev, registry.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, err = e.events.Update(e.ctx, "default", "ev", ev, registry.UpdateOptions{Subresource: "status"})
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "subresource")
}

func TestUpdateCreatesWhenAllowed(t *testing.T) {
	e := newEnv(t)
	// Endpoints may be created by PUT, as in Kubernetes.
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "svc"}}
	obj, created, err := e.endpoints.Update(e.ctx, "default", "svc", ep, registry.UpdateOptions{})
	if err != nil || !created {
		t.Fatalf("PUT of missing endpoints: created=%v err=%v", created, err)
	}
	if obj.(*corev1.Endpoints).UID == "" {
		t.Error("created endpoints have no uid")
	}
	// Pods may not.
	if _, created, err := e.pods.Update(e.ctx, "default", "nopod", newPod("nopod"), registry.UpdateOptions{}); !apierrors.IsNotFound(err) || created {
		t.Fatalf("PUT of missing pod: created=%v err=%v", created, err)
	}
}

func TestGuaranteedUpdateRetriesOnConflict(t *testing.T) {
	e := newEnv(t)
	e.createPod("default", newPod("web"))
	var calls atomic.Int32
	obj, err := e.pods.GuaranteedUpdate(e.ctx, "default", "web", registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		n := calls.Add(1)
		p := cur.(*corev1.Pod)
		if n == 1 {
			// Someone else writes between our read and our write.
			other := p.DeepCopy()
			other.Labels = map[string]string{"other": "yes"}
			if _, _, err := e.pods.Update(e.ctx, "default", "web", other, registry.UpdateOptions{}); err != nil {
				t.Errorf("concurrent update: %v", err)
			}
		}
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels["mine"] = "yes"
		p.ResourceVersion = "" // no precondition: retry on conflict
		return p, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Errorf("mutate ran %d times, want 2", calls.Load())
	}
	got := obj.(*corev1.Pod)
	if got.Labels["other"] != "yes" || got.Labels["mine"] != "yes" {
		t.Errorf("labels %v, want both writers' changes", got.Labels)
	}

	// With a precondition the conflict is the caller's.
	calls.Store(0)
	_, err = e.pods.GuaranteedUpdate(e.ctx, "default", "web", registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		calls.Add(1)
		p := cur.(*corev1.Pod)
		other := p.DeepCopy()
		other.Labels["other"] = "again"
		other.ResourceVersion = ""
		if _, _, err := e.pods.Update(e.ctx, "default", "web", other, registry.UpdateOptions{}); err != nil {
			t.Errorf("concurrent update: %v", err)
		}
		p.Labels["mine"] = "again"
		return p, nil // keeps the resourceVersion it read
	})
	wantStatus(t, err, http.StatusConflict, metav1.StatusReasonConflict, "the object has been modified")
	if calls.Load() != 1 {
		t.Errorf("mutate ran %d times with a precondition, want 1", calls.Load())
	}
	// Errors from mutate are returned as they are.
	_, err = e.pods.GuaranteedUpdate(e.ctx, "default", "web", registry.UpdateOptions{}, func(runtime.Object) (runtime.Object, error) {
		return nil, apierrors.NewBadRequest("patch says no")
	})
	wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "patch says no")
	_, err = e.pods.GuaranteedUpdate(e.ctx, "default", "gone", registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) { return cur, nil })
	wantStatus(t, err, http.StatusNotFound, metav1.StatusReasonNotFound, `pods "gone" not found`)
}

func TestDeleteImmediate(t *testing.T) {
	e := newEnv(t)
	s := e.createService("default", newService("web"))
	obj, gone, err := e.services.Delete(e.ctx, "default", "web", nil, false)
	if err != nil || !gone {
		t.Fatalf("delete: gone=%v err=%v", gone, err)
	}
	out := obj.(*corev1.Service)
	if out.UID != s.UID {
		t.Errorf("deleted object uid %s, want %s", out.UID, s.UID)
	}
	if rv, _ := strconv.ParseInt(out.ResourceVersion, 10, 64); rv <= mustRV(t, s.ResourceVersion) {
		t.Errorf("deleted object rv %s is not the delete's revision (created at %s)", out.ResourceVersion, s.ResourceVersion)
	}
	if _, err := e.services.Get(e.ctx, "default", "web"); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	_, _, err = e.services.Delete(e.ctx, "default", "web", nil, false)
	wantStatus(t, err, http.StatusNotFound, metav1.StatusReasonNotFound, `services "web" not found`)
	// A pod that never reached a node goes at once.
	e.createPod("default", newPod("unscheduled"))
	if _, gone, err := e.pods.Delete(e.ctx, "default", "unscheduled", nil, false); err != nil || !gone {
		t.Fatalf("delete unscheduled pod: gone=%v err=%v", gone, err)
	}
	// Dry run deletes nothing.
	e.createService("default", newService("dry"))
	if _, gone, err := e.services.Delete(e.ctx, "default", "dry", nil, true); err != nil || !gone {
		t.Fatalf("dry-run delete: gone=%v err=%v", gone, err)
	}
	if _, err := e.services.Get(e.ctx, "default", "dry"); err != nil {
		t.Fatalf("dry-run delete removed the service: %v", err)
	}
}

func TestDeletePreconditions(t *testing.T) {
	e := newEnv(t)
	s := e.createService("default", newService("web"))
	wrongUID := types.UID("nope")
	_, _, err := e.services.Delete(e.ctx, "default", "web", &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &wrongUID}}, false)
	wantStatus(t, err, http.StatusConflict, metav1.StatusReasonConflict, "Precondition failed: UID in precondition: nope")
	oldRV := "1"
	_, _, err = e.services.Delete(e.ctx, "default", "web", &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &oldRV}}, false)
	wantStatus(t, err, http.StatusConflict, metav1.StatusReasonConflict, "Precondition failed: ResourceVersion in precondition: 1")
	_, gone, err := e.services.Delete(e.ctx, "default", "web", &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion}}, false)
	if err != nil || !gone {
		t.Fatalf("delete with matching preconditions: gone=%v err=%v", gone, err)
	}
}

func TestDeletePodGracefully(t *testing.T) {
	e := newEnv(t)
	e.createPod("default", newPod("web", onNode("n1")))
	start := time.Now()
	obj, gone, err := e.pods.Delete(e.ctx, "default", "web", nil, false)
	if err != nil || gone {
		t.Fatalf("graceful delete: gone=%v err=%v", gone, err)
	}
	p := obj.(*corev1.Pod)
	if p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("deletionGracePeriodSeconds = %v, want 30", p.DeletionGracePeriodSeconds)
	}
	if p.DeletionTimestamp == nil {
		t.Fatal("no deletionTimestamp")
	}
	if d := p.DeletionTimestamp.Sub(start); d < 28*time.Second || d > 32*time.Second {
		t.Errorf("deletionTimestamp is %v after the request, want about 30s", d)
	}
	// The pod stays until the node confirms.
	got := e.getPod("default", "web")
	if got.DeletionTimestamp == nil || got.ResourceVersion != p.ResourceVersion {
		t.Fatalf("stored pod %+v", got.ObjectMeta)
	}
	// Deleting again without a grace period changes nothing.
	obj, gone, err = e.pods.Delete(e.ctx, "default", "web", nil, false)
	if err != nil || gone || obj.(*corev1.Pod).ResourceVersion != p.ResourceVersion {
		t.Fatalf("second delete: gone=%v err=%v", gone, err)
	}
	// The node agent's final delete with grace 0 removes it.
	zero := int64(0)
	if _, gone, err := e.pods.Delete(e.ctx, "default", "web", &metav1.DeleteOptions{GracePeriodSeconds: &zero}, false); err != nil || !gone {
		t.Fatalf("delete with grace 0: gone=%v err=%v", gone, err)
	}
	if _, err := e.pods.Get(e.ctx, "default", "web"); !apierrors.IsNotFound(err) {
		t.Fatalf("get after final delete: %v", err)
	}

	// Grace 0 on a running pod removes it at once (kubectl delete --force).
	e.createPod("default", newPod("forced", onNode("n1")))
	if _, gone, err := e.pods.Delete(e.ctx, "default", "forced", &metav1.DeleteOptions{GracePeriodSeconds: &zero}, false); err != nil || !gone {
		t.Fatalf("forced delete: gone=%v err=%v", gone, err)
	}
	// The pod's own terminationGracePeriodSeconds is the default.
	short := int64(3)
	e.createPod("default", newPod("short", onNode("n1"), func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = &short }))
	obj, _, err = e.pods.Delete(e.ctx, "default", "short", nil, false)
	if err != nil || *obj.(*corev1.Pod).DeletionGracePeriodSeconds != 3 {
		t.Fatalf("delete of pod with grace 3: %v %v", obj, err)
	}
	// A finished pod goes at once.
	done := e.createPod("default", newPod("done", onNode("n1")))
	done.Status.Phase = corev1.PodSucceeded
	if _, _, err := e.pods.Update(e.ctx, "default", "done", done, registry.UpdateOptions{Subresource: "status"}); err != nil {
		t.Fatal(err)
	}
	if _, gone, err := e.pods.Delete(e.ctx, "default", "done", nil, false); err != nil || !gone {
		t.Fatalf("delete of succeeded pod: gone=%v err=%v", gone, err)
	}
}

func TestDeletePodShortensGrace(t *testing.T) {
	e := newEnv(t)
	// A store over the same keys with a clock the test moves.
	var now atomic.Pointer[time.Time]
	t0 := time.Now().Truncate(time.Second)
	now.Store(&t0)
	pods := registry.NewStore(registry.StoreConfig{Kind: e.pods.Kind, Storage: testStore, Prefix: e.prefix, Namespaces: e.reg,
		Now: func() time.Time { return *now.Load() }})
	e.createPod("default", newPod("web", onNode("n1")))
	g := func(n int64) *metav1.DeleteOptions { return &metav1.DeleteOptions{GracePeriodSeconds: &n} }

	obj, _, err := pods.Delete(e.ctx, "default", "web", g(30), false)
	if err != nil {
		t.Fatal(err)
	}
	if p := obj.(*corev1.Pod); !p.DeletionTimestamp.Time.Equal(t0.Add(30*time.Second)) || *p.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("first delete: ts %v grace %d", p.DeletionTimestamp, *p.DeletionGracePeriodSeconds)
	}
	// 20s later a delete with grace 5: Kubernetes shortens the grace period,
	// counted from when deletion began: the deadline is t0+5s.
	t1 := t0.Add(20 * time.Second)
	now.Store(&t1)
	obj, gone, err := pods.Delete(e.ctx, "default", "web", g(5), false)
	if err != nil || gone {
		t.Fatalf("shorter delete: gone=%v err=%v", gone, err)
	}
	p := obj.(*corev1.Pod)
	if *p.DeletionGracePeriodSeconds != 5 || !p.DeletionTimestamp.Time.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("after shortening: grace %d ts %v, want 5 and %v", *p.DeletionGracePeriodSeconds, p.DeletionTimestamp.Time, t0.Add(5*time.Second))
	}
	// A longer grace period is ignored.
	obj, _, err = pods.Delete(e.ctx, "default", "web", g(60), false)
	if err != nil {
		t.Fatal(err)
	}
	if p := obj.(*corev1.Pod); *p.DeletionGracePeriodSeconds != 5 || !p.DeletionTimestamp.Time.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("longer grace changed the pod: grace %d ts %v", *p.DeletionGracePeriodSeconds, p.DeletionTimestamp)
	}
}

func TestFinalizers(t *testing.T) {
	e := newEnv(t)
	s := newService("held")
	s.Finalizers = []string{"example.com/hold"}
	created := e.createService("default", s)

	obj, gone, err := e.services.Delete(e.ctx, "default", "held", nil, false)
	if err != nil || gone {
		t.Fatalf("delete with a finalizer: gone=%v err=%v", gone, err)
	}
	held := obj.(*corev1.Service)
	if held.DeletionTimestamp == nil || held.DeletionGracePeriodSeconds == nil || *held.DeletionGracePeriodSeconds != 0 {
		t.Fatalf("held object metadata %+v", held.ObjectMeta)
	}
	got, err := e.services.Get(e.ctx, "default", "held")
	if err != nil || got.(*corev1.Service).DeletionTimestamp == nil {
		t.Fatalf("get of held object: %v", err)
	}
	// Its cluster IP is still held while the object exists.
	if used, _ := e.clusterIPs.Used(e.ctx); used[created.Spec.ClusterIP] == "" {
		t.Errorf("cluster IP %s released while the service still exists", created.Spec.ClusterIP)
	}
	// Once deleting, no new finalizers.
	more := got.(*corev1.Service).DeepCopy()
	more.Finalizers = append(more.Finalizers, "example.com/late")
	_, _, err = e.services.Update(e.ctx, "default", "held", more, registry.UpdateOptions{})
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "no new finalizers can be added if the object is being deleted")
	if !hasCause(st, "metadata.finalizers", "no new finalizers") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	// Other updates are fine while deleting; the deletion timestamp stays.
	relabel := got.(*corev1.Service).DeepCopy()
	relabel.Labels = map[string]string{"still": "here"}
	relabel.DeletionTimestamp = nil
	obj, _, err = e.services.Update(e.ctx, "default", "held", relabel, registry.UpdateOptions{})
	if err != nil || obj.(*corev1.Service).DeletionTimestamp == nil {
		t.Fatalf("update while deleting: %v", err)
	}
	// Removing the last finalizer removes the object and frees what it held.
	last := obj.(*corev1.Service).DeepCopy()
	last.Finalizers = nil
	if _, _, err := e.services.Update(e.ctx, "default", "held", last, registry.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.services.Get(e.ctx, "default", "held"); !apierrors.IsNotFound(err) {
		t.Fatalf("get after the last finalizer went: %v", err)
	}
	if used, _ := e.clusterIPs.Used(e.ctx); used[created.Spec.ClusterIP] != "" {
		t.Errorf("cluster IP %s still held after the service went", created.Spec.ClusterIP)
	}
	// Removing one of two finalizers keeps the object.
	two := newService("two")
	two.Finalizers = []string{"example.com/a", "example.com/b"}
	e.createService("default", two)
	if _, gone, err := e.services.Delete(e.ctx, "default", "two", nil, false); err != nil || gone {
		t.Fatalf("delete: gone=%v err=%v", gone, err)
	}
	cur, _ := e.services.Get(e.ctx, "default", "two")
	one := cur.(*corev1.Service).DeepCopy()
	one.Finalizers = []string{"example.com/b"}
	if _, _, err := e.services.Update(e.ctx, "default", "two", one, registry.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.services.Get(e.ctx, "default", "two"); err != nil {
		t.Fatalf("object went with a finalizer left: %v", err)
	}
}

func TestDeletePropagationFinalizers(t *testing.T) {
	e := newEnv(t)
	policy := func(p metav1.DeletionPropagation) *metav1.DeleteOptions {
		return &metav1.DeleteOptions{PropagationPolicy: &p}
	}
	yes := true
	tests := []struct {
		name      string
		opts      *metav1.DeleteOptions
		finalizer string // "" means deleted at once
	}{
		{"foreground", policy(metav1.DeletePropagationForeground), registry.FinalizerForeground},
		{"orphan", policy(metav1.DeletePropagationOrphan), registry.FinalizerOrphan},
		{"orphandependents", &metav1.DeleteOptions{OrphanDependents: &yes}, registry.FinalizerOrphan},
		{"background", policy(metav1.DeletePropagationBackground), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.createService("default", newService(tt.name))
			obj, gone, err := e.services.Delete(e.ctx, "default", tt.name, tt.opts, false)
			if err != nil {
				t.Fatal(err)
			}
			if tt.finalizer == "" {
				if !gone {
					t.Fatal("not deleted at once")
				}
				return
			}
			s := obj.(*corev1.Service)
			if gone || s.DeletionTimestamp == nil || len(s.Finalizers) != 1 || s.Finalizers[0] != tt.finalizer {
				t.Fatalf("gone=%v deletionTimestamp=%v finalizers=%v, want %s", gone, s.DeletionTimestamp, s.Finalizers, tt.finalizer)
			}
			// The garbage collector removing its finalizer completes the delete.
			s.Finalizers = nil
			if _, _, err := e.services.Update(e.ctx, "default", tt.name, s, registry.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.services.Get(e.ctx, "default", tt.name); !apierrors.IsNotFound(err) {
				t.Fatalf("after finalizer removal: %v", err)
			}
		})
	}
	e.createService("default", newService("both"))
	orphan := metav1.DeletePropagationOrphan
	_, _, err := e.services.Delete(e.ctx, "default", "both", &metav1.DeleteOptions{PropagationPolicy: &orphan, OrphanDependents: &yes}, false)
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid,
		`DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: "Orphan": orphanDependents and deletionPropagation cannot be both set`)
	if !hasCause(st, "propagationPolicy", "cannot be both set") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	odd := metav1.DeletionPropagation("Sideways")
	_, _, err = e.services.Delete(e.ctx, "default", "both", &metav1.DeleteOptions{PropagationPolicy: &odd}, false)
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, `Unsupported value: "Sideways"`)
	if _, err := e.services.Get(e.ctx, "default", "both"); err != nil {
		t.Fatalf("refused deletes removed the service: %v", err)
	}
}

func TestNamespaceLifecycle(t *testing.T) {
	e := newEnv(t)
	ns := e.createNamespace("team")
	if ns.Status.Phase != corev1.NamespaceActive || ns.Labels[corev1.LabelMetadataName] != "team" {
		t.Fatalf("new namespace: phase %s labels %v", ns.Status.Phase, ns.Labels)
	}
	if len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != corev1.FinalizerKubernetes {
		t.Fatalf("spec.finalizers %v", ns.Spec.Finalizers)
	}
	obj, gone, err := e.namespaces.Delete(e.ctx, "", "team", nil, false)
	if err != nil || gone {
		t.Fatalf("delete namespace: gone=%v err=%v", gone, err)
	}
	term := obj.(*corev1.Namespace)
	if term.Status.Phase != corev1.NamespaceTerminating || term.DeletionTimestamp == nil {
		t.Fatalf("deleted namespace: phase %s ts %v", term.Status.Phase, term.DeletionTimestamp)
	}
	got, err := e.namespaces.Get(e.ctx, "", "team")
	if err != nil || got.(*corev1.Namespace).Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("get terminating namespace: %v", err)
	}
	// The namespace controller's finalize removes the spec finalizer; the
	// namespace then goes.
	fin := got.(*corev1.Namespace).DeepCopy()
	fin.Spec.Finalizers = nil
	fin.Labels["sneaky"] = "change" // finalize may change only spec.finalizers
	if _, _, err := e.namespaces.Update(e.ctx, "", "team", fin, registry.UpdateOptions{Subresource: "finalize"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.namespaces.Get(e.ctx, "", "team"); !apierrors.IsNotFound(err) {
		t.Fatalf("get after finalize: %v", err)
	}
	// A namespace of the same name can be made again.
	e.createNamespace("team")

	// A main-resource update cannot drop spec.finalizers.
	cur, _ := e.namespaces.Get(e.ctx, "", "team")
	nofin := cur.(*corev1.Namespace).DeepCopy()
	nofin.Spec.Finalizers = nil
	obj, _, err = e.namespaces.Update(e.ctx, "", "team", nofin, registry.UpdateOptions{})
	if err != nil || len(obj.(*corev1.Namespace).Spec.Finalizers) != 1 {
		t.Fatalf("update dropping spec.finalizers: %v %v", obj, err)
	}
}

func TestProtectedNamespaces(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"kube-system", "kube-public", "kube-node-lease"} {
		e.createNamespace(name)
	}
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		_, _, err := e.namespaces.Delete(e.ctx, "", name, nil, false)
		wantStatus(t, err, http.StatusForbidden, metav1.StatusReasonForbidden, `namespaces "`+name+`" is forbidden: this namespace may not be deleted`)
		got, err := e.namespaces.Get(e.ctx, "", name)
		if err != nil || got.(*corev1.Namespace).DeletionTimestamp != nil {
			t.Fatalf("%s after refused delete: %v", name, err)
		}
	}
}

func TestDeleteCollection(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"a1", "a2", "b1"} {
		e.createPod("default", newPod(n, withLabels("group", n[:1])))
	}
	e.createPod("other", newPod("a3", withLabels("group", "a")))
	sel := mustSelector(t, "group=a")
	list, err := e.pods.DeleteCollection(e.ctx, "default", registry.ListOptions{Labels: sel}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(t, list), ","); got != "a1,a2" {
		t.Fatalf("deleted %s, want a1,a2", got)
	}
	left, err := e.pods.List(e.ctx, "", registry.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(t, left), ","); got != "b1,a3" {
		t.Fatalf("left %s, want b1,a3", got)
	}
}

func mustRV(t *testing.T, rv string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", rv, err)
	}
	return n
}
