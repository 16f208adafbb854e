package registry_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berth-project/berth/internal/registry"
)

func mustSelector(t *testing.T, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func mustFields(t *testing.T, s string) fields.Selector {
	t.Helper()
	sel, err := fields.ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestListSelectors(t *testing.T) {
	e := newEnv(t)
	e.createPod("default", newPod("a", withLabels("app", "a", "tier", "web"), onNode("n1")))
	e.createPod("default", newPod("b", withLabels("app", "b", "tier", "db"), onNode("n2")))
	e.createPod("default", newPod("c", withLabels("app", "c")))
	e.createPod("other", newPod("d", withLabels("app", "a"), func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever }))

	tests := []struct {
		ns     string
		labels string
		fields string
		want   string
	}{
		{ns: "default", want: "a,b,c"},
		{ns: "", want: "a,b,c,d"},
		{ns: "other", want: "d"},
		{ns: "default", labels: "app=a", want: "a"},
		{ns: "", labels: "app==a", want: "a,d"},
		{ns: "default", labels: "app!=a", want: "b,c"},
		{ns: "default", labels: "app in (a,c)", want: "a,c"},
		{ns: "default", labels: "app notin (a,c)", want: "b"},
		{ns: "default", labels: "tier", want: "a,b"},
		{ns: "default", labels: "!tier", want: "c"},
		{ns: "default", labels: "app=a,tier=db", want: ""},
		{ns: "default", labels: "tier in (web,db),app!=b", want: "a"},
		{ns: "default", fields: "spec.nodeName=n1", want: "a"},
		{ns: "default", fields: "spec.nodeName=", want: "c"},
		{ns: "default", fields: "spec.nodeName!=n1", want: "b,c"},
		{ns: "", fields: "metadata.name=d", want: "d"},
		{ns: "", fields: "metadata.namespace=other", want: "d"},
		{ns: "", fields: "spec.restartPolicy=Never", want: "d"},
		{ns: "", fields: "status.phase=Pending", want: "a,b,c,d"},
		{ns: "", fields: "status.phase=Running", want: ""},
		{ns: "", labels: "app=a", fields: "metadata.namespace=default", want: "a"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("ns=%s,labels=%s,fields=%s", tt.ns, tt.labels, tt.fields), func(t *testing.T) {
			opts := registry.ListOptions{}
			if tt.labels != "" {
				opts.Labels = mustSelector(t, tt.labels)
			}
			if tt.fields != "" {
				opts.Fields = mustFields(t, tt.fields)
			}
			list, err := e.pods.List(e.ctx, tt.ns, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names(t, list), ","); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			pl := list.(*corev1.PodList)
			if pl.Kind != "PodList" || pl.APIVersion != "v1" || pl.ResourceVersion == "" {
				t.Errorf("list meta: kind %q apiVersion %q rv %q", pl.Kind, pl.APIVersion, pl.ResourceVersion)
			}
			for _, p := range pl.Items {
				if p.ResourceVersion == "" {
					t.Errorf("item %s has no resourceVersion", p.Name)
				}
			}
		})
	}
}

func TestListUnsupportedFieldSelector(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		store  *registry.Store
		fields string
		bad    string
	}{
		{e.pods, "spec.foo=bar", "spec.foo"},
		{e.pods, "metadata.labels=x", "metadata.labels"},
		{e.services, "spec.clusterIP=10.96.0.10", "spec.clusterIP"},
		{e.namespaces, "metadata.namespace=default", "metadata.namespace"}, // cluster-scoped
	} {
		_, err := tt.store.List(e.ctx, "", registry.ListOptions{Fields: mustFields(t, tt.fields)})
		wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "field label not supported: "+tt.bad)
		_, err = tt.store.Watch(e.ctx, "", registry.ListOptions{Fields: mustFields(t, tt.fields)})
		wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "field label not supported: "+tt.bad)
	}
	// Fields every kind has, and kind-specific ones, are accepted.
	for _, tt := range []struct {
		store  *registry.Store
		fields string
	}{
		{e.namespaces, "metadata.name=default,status.phase=Active"},
		{e.nodes, "spec.unschedulable=false"},
		{e.events, "involvedObject.kind=Pod,reason=Started,type=Normal"},
	} {
		if _, err := tt.store.List(e.ctx, "", registry.ListOptions{Fields: mustFields(t, tt.fields)}); err != nil {
			t.Errorf("%s %s: %v", tt.store.Kind.Resource, tt.fields, err)
		}
	}
}

func TestListPaging(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 5; i++ {
		e.createPod("default", newPod(fmt.Sprintf("p%d", i)))
	}
	page := func(limit int64, cont string) *corev1.PodList {
		t.Helper()
		list, err := e.pods.List(e.ctx, "default", registry.ListOptions{Limit: limit, Continue: cont})
		if err != nil {
			t.Fatal(err)
		}
		return list.(*corev1.PodList)
	}
	p1 := page(2, "")
	if got := strings.Join(names(t, p1), ","); got != "p0,p1" || p1.Continue == "" {
		t.Fatalf("page 1: %s continue %q", got, p1.Continue)
	}
	if p1.RemainingItemCount == nil || *p1.RemainingItemCount != 3 {
		t.Errorf("page 1 remainingItemCount %v, want 3", p1.RemainingItemCount)
	}
	// Changes after the first page do not show in later pages: a continued
	// list is one snapshot, at the first page's resourceVersion.
	e.createPod("default", newPod("p2a"))
	if _, _, err := e.pods.Delete(e.ctx, "default", "p3", nil, false); err != nil {
		t.Fatal(err)
	}
	p2 := page(2, p1.Continue)
	if got := strings.Join(names(t, p2), ","); got != "p2,p3" || p2.Continue == "" {
		t.Fatalf("page 2: %s continue %q", got, p2.Continue)
	}
	if p2.ResourceVersion != p1.ResourceVersion {
		t.Errorf("page 2 rv %s, page 1 rv %s", p2.ResourceVersion, p1.ResourceVersion)
	}
	p3 := page(2, p2.Continue)
	if got := strings.Join(names(t, p3), ","); got != "p4" || p3.Continue != "" || p3.RemainingItemCount != nil {
		t.Fatalf("page 3: %s continue %q remaining %v", got, p3.Continue, p3.RemainingItemCount)
	}
	// A limit that covers everything gives no continue token.
	if all := page(5, ""); all.Continue != "" || len(all.Items) != 5 {
		t.Fatalf("limit 5: %d items continue %q", len(all.Items), all.Continue)
	}
	if all := page(0, ""); all.Continue != "" || len(all.Items) != 5 {
		t.Fatalf("no limit: %d items continue %q", len(all.Items), all.Continue)
	}
	// Garbage tokens are a 400.
	for _, bad := range []string{"garbage!", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MCwic3RhcnQiOiJ4In0", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NSwic3RhcnQiOiIuLi94In0"} {
		_, err := e.pods.List(e.ctx, "default", registry.ListOptions{Limit: 2, Continue: bad})
		wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "continue key is not valid")
	}
}

func TestListPagingWithFilteringSelector(t *testing.T) {
	e := newEnv(t)
	// Only every third pod matches, so pages must read past non-matching
	// objects to fill up.
	for i := 0; i < 12; i++ {
		color := "grey"
		if i%3 == 0 {
			color = "red"
		}
		e.createPod("default", newPod(fmt.Sprintf("p%02d", i), withLabels("color", color)))
	}
	var got []string
	cont := ""
	pages := 0
	for {
		list, err := e.pods.List(e.ctx, "default", registry.ListOptions{Limit: 1, Continue: cont, Labels: mustSelector(t, "color=red")})
		if err != nil {
			t.Fatal(err)
		}
		pl := list.(*corev1.PodList)
		pages++
		if len(pl.Items) > 1 {
			t.Fatalf("page %d has %d items, limit 1", pages, len(pl.Items))
		}
		if pl.RemainingItemCount != nil {
			t.Errorf("remainingItemCount %d set with a selector", *pl.RemainingItemCount)
		}
		got = append(got, names(t, pl)...)
		cont = pl.Continue
		if cont == "" {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(got, ",") != "p00,p03,p06,p09" {
		t.Fatalf("paged through %v", got)
	}
	// Limit 3 over the same: one full page, then the rest.
	list, err := e.pods.List(e.ctx, "default", registry.ListOptions{Limit: 3, Labels: mustSelector(t, "color=red")})
	if err != nil {
		t.Fatal(err)
	}
	pl := list.(*corev1.PodList)
	if strings.Join(names(t, pl), ",") != "p00,p03,p06" || pl.Continue == "" {
		t.Fatalf("limit 3: %v continue %q", names(t, pl), pl.Continue)
	}
	list, err = e.pods.List(e.ctx, "default", registry.ListOptions{Limit: 3, Labels: mustSelector(t, "color=red"), Continue: pl.Continue})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, list); strings.Join(got, ",") != "p09" {
		t.Fatalf("second page %v", got)
	}
}

func TestListAtExactResourceVersion(t *testing.T) {
	e := newEnv(t)
	a := e.createPod("default", newPod("a"))
	e.createPod("default", newPod("b"))
	upd := e.getPod("default", "a")
	upd.Labels = map[string]string{"changed": "yes"}
	if _, _, err := e.pods.Update(e.ctx, "default", "a", upd, registry.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	list, err := e.pods.List(e.ctx, "default", registry.ListOptions{ResourceVersion: a.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if err != nil {
		t.Fatal(err)
	}
	pl := list.(*corev1.PodList)
	if pl.ResourceVersion != a.ResourceVersion || len(pl.Items) != 1 || pl.Items[0].Name != "a" || pl.Items[0].Labels["changed"] != "" {
		t.Fatalf("exact list: rv %s items %v", pl.ResourceVersion, pl.Items)
	}
	if pl.Items[0].ResourceVersion != a.ResourceVersion {
		t.Errorf("item rv %s, want %s", pl.Items[0].ResourceVersion, a.ResourceVersion)
	}
	// NotOlderThan (and no match) reads the latest state.
	list, err = e.pods.List(e.ctx, "default", registry.ListOptions{ResourceVersion: a.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	if err != nil || len(list.(*corev1.PodList).Items) != 2 {
		t.Fatalf("NotOlderThan list: %v %v", list, err)
	}
	_, err = e.pods.List(e.ctx, "default", registry.ListOptions{ResourceVersion: "0", ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "resourceVersionMatch=Exact")
	_, err = e.pods.List(e.ctx, "default", registry.ListOptions{ResourceVersion: "abc", ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, `invalid resource version "abc"`)
	_, err = e.pods.List(e.ctx, "default", registry.ListOptions{ResourceVersionMatch: "Sometime"})
	wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, "resourceVersionMatch")
}

func TestTableForList(t *testing.T) {
	e := newEnv(t)
	e.createPod("default", newPod("a"))
	e.createPod("default", newPod("b"))
	list, err := e.pods.List(e.ctx, "default", registry.ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	pl := list.(*corev1.PodList)
	table, err := e.pods.Kind.Table(list, registry.IncludeMetadata, false, pl.Items[0].CreationTimestamp.Time)
	if err != nil {
		t.Fatal(err)
	}
	if table.Kind != "Table" || table.APIVersion != "meta.k8s.io/v1" || table.ResourceVersion != pl.ResourceVersion || table.Continue != pl.Continue {
		t.Fatalf("table meta %+v %+v", table.TypeMeta, table.ListMeta)
	}
	if len(table.ColumnDefinitions) == 0 || table.ColumnDefinitions[0].Name != "Name" || len(table.Rows) != 1 {
		t.Fatalf("columns %v rows %d", table.ColumnDefinitions, len(table.Rows))
	}
	if n := len(table.Rows[0].Cells); n != len(table.ColumnDefinitions) {
		t.Fatalf("%d cells for %d columns", n, len(table.ColumnDefinitions))
	}
	if !strings.Contains(string(table.Rows[0].Object.Raw), `"kind":"PartialObjectMetadata"`) {
		t.Errorf("row object %s", table.Rows[0].Object.Raw)
	}
	table, err = e.pods.Kind.Table(&pl.Items[0], registry.IncludeObjectV, true, pl.Items[0].CreationTimestamp.Time)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.ColumnDefinitions) != 0 || !strings.Contains(string(table.Rows[0].Object.Raw), `"kind":"Pod"`) {
		t.Errorf("noHeaders table %v, row %s", table.ColumnDefinitions, table.Rows[0].Object.Raw)
	}
	table, err = e.pods.Kind.Table(&pl.Items[0], registry.IncludeNone, false, pl.Items[0].CreationTimestamp.Time)
	if err != nil || table.Rows[0].Object.Raw != nil {
		t.Errorf("includeObject=None: %v %s", err, table.Rows[0].Object.Raw)
	}
}
