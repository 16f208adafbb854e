package deployment

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestComputeHash(t *testing.T) {
	tmpl := &v1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "demo"}},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "agnhost"}}},
	}
	seen := map[string]string{}
	for _, cc := range []*int32{nil, ptr.To(int32(1)), ptr.To(int32(2)), ptr.To(int32(1<<31 - 1))} {
		h := ComputeHash(tmpl, cc)
		name := fmt.Sprint(ptr.Deref(cc, -1))
		if other, dup := seen[h]; dup {
			t.Errorf("collisionCount %s and %s hash alike: %s", name, other, h)
		}
		seen[h] = name
		if strings.ContainsAny(h, "aeiou") || h == "" {
			t.Errorf("hash %q is not SafeEncodeString output", h)
		}
	}
	if ComputeHash(tmpl, nil) != ComputeHash(tmpl.DeepCopy(), nil) {
		t.Error("hash of equal templates differs")
	}
}

// TestComputeHashUnique mirrors upstream's TestPodTemplateSpecHashFnv: 1000
// templates differing in one image tag all hash differently.
func TestComputeHashUnique(t *testing.T) {
	seen := map[string]int{}
	for i := range 1000 {
		var tmpl v1.PodTemplateSpec
		js := `{"metadata":{"labels":{"app":"cats"}},"spec":{"containers":[{"name":"cats","image":"registry/test/cats:v0.` + strconv.Itoa(i) + `.0","ports":[{"name":"http","containerPort":9077,"protocol":"TCP"}]}],"restartPolicy":"Always"}}`
		if err := json.Unmarshal([]byte(js), &tmpl); err != nil {
			t.Fatal(err)
		}
		h := ComputeHash(&tmpl, nil)
		if j, dup := seen[h]; dup {
			t.Fatalf("hash collision between %d and %d", j, i)
		}
		seen[h] = i
	}
}

func TestResolveFenceposts(t *testing.T) {
	s := func(v string) *intstr.IntOrString { x := intstr.FromString(v); return &x }
	tests := []struct {
		surge, unavail         *intstr.IntOrString
		desired                int32
		wantSurge, wantUnavail int32
		wantErr                bool
	}{
		{s("0%"), s("0%"), 0, 0, 1, false},
		{s("39%"), s("39%"), 10, 4, 3, false},
		{s("oops"), s("39%"), 10, 0, 0, true},
		{s("55%"), s("urg"), 10, 0, 0, true},
		{nil, s("39%"), 10, 0, 3, false},
		{s("39%"), nil, 10, 4, 0, false},
		{nil, nil, 10, 0, 1, false},
		{s("25%"), s("25%"), 3, 1, 0, false}, // 0.75 rounds up and down
		{ptr.To(intstr.FromInt32(1)), ptr.To(intstr.FromInt32(0)), 3, 1, 0, false},
		{ptr.To(intstr.FromInt32(-1)), nil, 3, 0, 0, true},
	}
	for i, tt := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			surge, unavail, err := ResolveFenceposts(tt.surge, tt.unavail, tt.desired)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && (surge != tt.wantSurge || unavail != tt.wantUnavail) {
				t.Errorf("got %d/%d, want %d/%d", surge, unavail, tt.wantSurge, tt.wantUnavail)
			}
		})
	}
}

func testDeployment(replicas int32, surge, unavail intstr.IntOrString) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "d-uid", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail},
			},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "v1"}}},
			},
		},
	}
}

func testRS(name string, replicas, available int32, age time.Duration) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name),
			CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-age))},
		Spec:   appsv1.ReplicaSetSpec{Replicas: ptr.To(replicas)},
		Status: appsv1.ReplicaSetStatus{Replicas: replicas, ReadyReplicas: available, AvailableReplicas: available},
	}
}

func TestNewRSNewReplicas(t *testing.T) {
	tests := []struct {
		name                     string
		strategy                 appsv1.DeploymentStrategyType
		depReplicas, newReplicas int32
		surge                    int32
		old                      []int32
		want                     int32
	}{
		{"can not scale up - to newRSReplicas", appsv1.RollingUpdateDeploymentStrategyType, 1, 5, 1, []int32{2}, 5},
		{"scale up - to depReplicas", appsv1.RollingUpdateDeploymentStrategyType, 6, 2, 10, []int32{1}, 6},
		{"recreate - to depReplicas", appsv1.RecreateDeploymentStrategyType, 3, 1, 1, []int32{1}, 3},
		{"surge one at a time", appsv1.RollingUpdateDeploymentStrategyType, 3, 0, 1, []int32{3}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDeployment(tt.depReplicas, intstr.FromInt32(tt.surge), intstr.FromInt32(0))
			d.Spec.Strategy.Type = tt.strategy
			newRS := testRS("new", tt.newReplicas, 0, 0)
			all := []*appsv1.ReplicaSet{newRS}
			for i, n := range tt.old {
				all = append(all, testRS(fmt.Sprintf("old-%d", i), n, n, time.Hour))
			}
			got, err := newRSNewReplicas(d, all, newRS)
			if err != nil || got != tt.want {
				t.Errorf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// TestNewRSWaitsForScaledDownPodsToGo: an old ReplicaSet just scaled from
// 3 to 2 still runs 3 Pods until its controller removes one; the new one
// may not take that slot yet, or 5 Pods would run with maxSurge 1.
func TestNewRSWaitsForScaledDownPodsToGo(t *testing.T) {
	d := testDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0))
	old := testRS("old", 2, 3, time.Hour)
	old.Status.Replicas = 3
	newRS := testRS("new", 1, 1, 0)
	all := []*appsv1.ReplicaSet{old, newRS}
	if got, err := newRSNewReplicas(d, all, newRS); err != nil || got != 1 {
		t.Fatalf("got %d, %v; want 1 until the old Pod is gone", got, err)
	}
	old.Status.Replicas = 2
	if got, err := newRSNewReplicas(d, all, newRS); err != nil || got != 2 {
		t.Fatalf("got %d, %v; want 2 once it is", got, err)
	}
}

// TestPlanNewReplicaSet mirrors upstream's
// TestDeploymentController_reconcileNewReplicaSet.
func TestPlanNewReplicaSet(t *testing.T) {
	tests := []struct {
		depReplicas, surge, oldReplicas, newReplicas, want int32
	}{
		{10, 0, 10, 0, 0},
		{10, 2, 10, 0, 2},
		{10, 2, 5, 0, 7},
		{10, 2, 10, 2, 2},
		{2, 0, 0, 3, 2}, // above spec.replicas: down
	}
	for i, tt := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			d := testDeployment(tt.depReplicas, intstr.FromInt32(tt.surge), intstr.FromInt32(1))
			newRS := testRS("new", tt.newReplicas, 0, 0)
			old := testRS("old", tt.oldReplicas, tt.oldReplicas, time.Hour)
			got, err := planNewReplicaSet(d, []*appsv1.ReplicaSet{old, newRS}, newRS)
			if err != nil || got != tt.want {
				t.Errorf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// TestPlanOldReplicaSets mirrors upstream's
// TestDeploymentController_reconcileOldReplicaSets (and its cleanup of
// unhealthy replicas).
func TestPlanOldReplicaSets(t *testing.T) {
	tests := []struct {
		name                        string
		depReplicas, maxUnavailable int32
		oldReplicas, newReplicas    int32
		readyOld, readyNew          int32
		wantOld                     int32 // -1: no step
	}{
		{"no room", 10, 0, 10, 0, 10, 0, -1},
		{"scale down by maxUnavailable", 10, 2, 10, 0, 10, 0, 8},
		{"unhealthy old replicas cleaned up first", 10, 2, 10, 0, 8, 0, 8},
		{"one unhealthy cleaned, one ready scaled down", 10, 2, 10, 0, 9, 0, 8},
		{"unavailable new pods do not make room", 10, 2, 8, 2, 8, 0, -1},
		{"new pods available: old go", 3, 0, 3, 1, 3, 1, 2},
		// Just scaled from 3 to 2, the old status still counts the Pod
		// being removed: only 4 stay available, so one more may go.
		{"status not caught up with a scale-down", 3, 0, 2, 3, 3, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDeployment(tt.depReplicas, intstr.FromInt32(1), intstr.FromInt32(tt.maxUnavailable))
			if tt.maxUnavailable == 0 {
				d.Spec.Strategy.RollingUpdate.MaxSurge = ptr.To(intstr.FromInt32(1))
			}
			old := testRS("old", tt.oldReplicas, tt.readyOld, time.Hour)
			newRS := testRS("new", tt.newReplicas, tt.readyNew, 0)
			steps := planOldReplicaSets(d, []*appsv1.ReplicaSet{old, newRS}, []*appsv1.ReplicaSet{old}, newRS)
			switch {
			case tt.wantOld < 0 && len(steps) != 0:
				t.Errorf("steps = %+v, want none", steps)
			case tt.wantOld >= 0 && (len(steps) != 1 || steps[0].replicas != tt.wantOld):
				t.Errorf("steps = %+v, want old -> %d", steps, tt.wantOld)
			}
		})
	}
}

// TestRollingUpdateNeverDropsBelowMinAvailable walks a whole 3-replica
// rollout with maxSurge 1 / maxUnavailable 0 through the planners, with new
// pods becoming available one step later, and checks availability never
// drops below 3 and the surge never above 4.
func TestRollingUpdateNeverDropsBelowMinAvailable(t *testing.T) {
	d := testDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0))
	old := testRS("old", 3, 3, time.Hour)
	newRS := testRS("new", 0, 0, 0)
	for step := 0; step < 20; step++ {
		all := []*appsv1.ReplicaSet{old, newRS}
		if avail := availableCount(all); avail < 3 {
			t.Fatalf("step %d: %d available, want >= 3", step, avail)
		}
		if total := replicaCount(all); total > 4 {
			t.Fatalf("step %d: %d replicas, want <= 4", step, total)
		}
		if rsReplicas(newRS) == 3 && rsReplicas(old) == 0 {
			return
		}
		target, err := planNewReplicaSet(d, all, newRS)
		if err != nil {
			t.Fatal(err)
		}
		if target != rsReplicas(newRS) {
			newRS.Spec.Replicas = ptr.To(target)
		} else {
			for _, s := range planOldReplicaSets(d, all, activeReplicaSets([]*appsv1.ReplicaSet{old}), newRS) {
				s.rs.Spec.Replicas = ptr.To(s.replicas)
			}
		}
		// The ReplicaSet controller and kubelet catch up: old pods go at
		// once, new ones become available.
		old.Status.Replicas, old.Status.AvailableReplicas = rsReplicas(old), min(old.Status.AvailableReplicas, rsReplicas(old))
		newRS.Status.Replicas, newRS.Status.AvailableReplicas = rsReplicas(newRS), rsReplicas(newRS)
	}
	t.Fatalf("rollout did not finish: old %d new %d", rsReplicas(old), rsReplicas(newRS))
}

func TestPlanProportionalScale(t *testing.T) {
	mk := func(name string, replicas int32, age time.Duration, maxAnno string) *appsv1.ReplicaSet {
		rs := testRS(name, replicas, replicas, age)
		rs.Annotations = map[string]string{MaxReplicasAnnotation: maxAnno, DesiredReplicasAnnotation: "10"}
		return rs
	}
	tests := []struct {
		name     string
		replicas int32
		rss      []*appsv1.ReplicaSet
		want     map[string]int32
		wantOp   string
	}{
		{"up 10 to 20", 20, []*appsv1.ReplicaSet{mk("old", 6, time.Hour, "10"), mk("new", 4, 0, "10")}, map[string]int32{"old": 12, "new": 8}, "up"},
		{"down 10 to 5", 5, []*appsv1.ReplicaSet{mk("old", 6, time.Hour, "10"), mk("new", 4, 0, "10")}, map[string]int32{"old": 3, "new": 2}, "down"},
		{"rounding capped by what is left", 15, []*appsv1.ReplicaSet{mk("a", 5, 2*time.Hour, "10"), mk("b", 3, time.Hour, "10"), mk("c", 2, 0, "10")}, map[string]int32{"a": 8, "b": 5, "c": 2}, "up"},
		{"down to zero", 0, []*appsv1.ReplicaSet{mk("old", 6, time.Hour, "10"), mk("new", 4, 0, "10")}, map[string]int32{"old": 0, "new": 0}, "down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// maxSurge 0 keeps the arithmetic readable.
			d := testDeployment(tt.replicas, intstr.FromInt32(0), intstr.FromInt32(1))
			newRS := tt.rss[len(tt.rss)-1]
			steps, op := planProportionalScale(d, newRS, tt.rss[:len(tt.rss)-1])
			if op != tt.wantOp {
				t.Errorf("op = %q, want %q", op, tt.wantOp)
			}
			got := map[string]int32{}
			for _, s := range steps {
				got[s.rs.Name] = s.replicas
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d (all %v)", k, got[k], v, got)
				}
			}
		})
	}
}

func TestRevisionHelpers(t *testing.T) {
	rs := func(rev string) *appsv1.ReplicaSet {
		r := testRS("rs"+rev, 0, 0, 0)
		if rev != "" {
			r.Annotations = map[string]string{RevisionAnnotation: rev}
		}
		return r
	}
	all := []*appsv1.ReplicaSet{rs("3"), rs("1"), rs(""), rs("7"), rs("junk")}
	if got := maxRevision(all); got != 7 {
		t.Errorf("maxRevision = %d, want 7", got)
	}
	if got := lastRevision(all); got != 3 {
		t.Errorf("lastRevision = %d, want 3", got)
	}
	if got := appendRevisionHistory("", "2"); got != "2" {
		t.Errorf("history = %q", got)
	}
	if got := appendRevisionHistory("1,2", "4"); got != "1,2,4" {
		t.Errorf("history = %q", got)
	}
	long := strings.Repeat("1234567,", 250)[:1999]
	if got := appendRevisionHistory(long, "99"); len(got) > maxRevisionHistoryChars || !strings.HasSuffix(got, ",99") {
		t.Errorf("history not trimmed to %d chars: len %d", maxRevisionHistoryChars, len(got))
	}
}

func TestSetNewReplicaSetAnnotations(t *testing.T) {
	d := testDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Annotations = map[string]string{"kubernetes.io/change-cause": "v2", RevisionAnnotation: "9", lastAppliedAnnotation: "{}"}
	rs := testRS("rs", 0, 0, 0)
	if !setNewReplicaSetAnnotations(d, rs, "4", false) {
		t.Fatal("no change reported")
	}
	want := map[string]string{"kubernetes.io/change-cause": "v2", RevisionAnnotation: "4", DesiredReplicasAnnotation: "3", MaxReplicasAnnotation: "4"}
	for k, v := range want {
		if rs.Annotations[k] != v {
			t.Errorf("%s = %q, want %q", k, rs.Annotations[k], v)
		}
	}
	if _, ok := rs.Annotations[lastAppliedAnnotation]; ok {
		t.Error("last-applied-configuration copied")
	}
	// A rollback to this ReplicaSet: revision 4 becomes 6, history keeps 4.
	if !setNewReplicaSetAnnotations(d, rs, "6", true) || rs.Annotations[RevisionAnnotation] != "6" || rs.Annotations[RevisionHistoryAnnotation] != "4" {
		t.Errorf("after rollback annotations = %v", rs.Annotations)
	}
	// Never lowered.
	if setNewReplicaSetAnnotations(d, rs, "5", true) || rs.Annotations[RevisionAnnotation] != "6" {
		t.Errorf("revision lowered: %v", rs.Annotations)
	}
}

func TestRolloutStatusConditions(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	d := testDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.ProgressDeadlineSeconds = ptr.To(int32(60))
	newRS := testRS("new", 3, 3, 0)
	st := rolloutStatus([]*appsv1.ReplicaSet{newRS}, newRS, d, now)
	if c := getCondition(st, appsv1.DeploymentProgressing); c == nil || c.Reason != ReasonNewReplicaSetAvailable || c.Status != v1.ConditionTrue {
		t.Errorf("Progressing = %+v, want NewReplicaSetAvailable", c)
	}
	if c := getCondition(st, appsv1.DeploymentAvailable); c == nil || c.Reason != ReasonMinimumReplicasAvailable {
		t.Errorf("Available = %+v", c)
	}
	if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.AvailableReplicas != 3 || st.UnavailableReplicas != 0 || st.ObservedGeneration != 1 {
		t.Errorf("status = %+v", st)
	}

	// Stuck: no progress since the condition was updated 2 minutes ago.
	stuck := testRS("new", 3, 1, 0)
	old := testRS("old", 2, 2, time.Hour)
	d.Status = appsv1.DeploymentStatus{Replicas: 5, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3,
		Conditions: []appsv1.DeploymentCondition{newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, ReasonReplicaSetUpdated, "", metav1.NewTime(now.Add(-2*time.Minute)))}}
	st = rolloutStatus([]*appsv1.ReplicaSet{old, stuck}, stuck, d, now)
	if c := getCondition(st, appsv1.DeploymentProgressing); c == nil || c.Reason != ReasonProgressDeadlineExceeded || c.Status != v1.ConditionFalse {
		t.Errorf("Progressing = %+v, want ProgressDeadlineExceeded", c)
	}
	if c := getCondition(st, appsv1.DeploymentAvailable); c == nil || c.Status != v1.ConditionTrue {
		t.Errorf("Available = %+v (3 of 3 available with maxUnavailable 0)", c)
	}

	// Progress resets the deadline: lastUpdateTime moves, transition stays.
	d.Status.AvailableReplicas = 2
	st = rolloutStatus([]*appsv1.ReplicaSet{old, stuck}, stuck, d, now)
	c := getCondition(st, appsv1.DeploymentProgressing)
	if c == nil || c.Reason != ReasonReplicaSetUpdated || !c.LastUpdateTime.Equal(&now) || c.LastTransitionTime.Equal(&now) {
		t.Errorf("Progressing = %+v, want updated at now with the old transition time", c)
	}
	// A Deployment whose recorded condition is 2 minutes old with a 60s
	// deadline is due for its check now; a complete one never.
	if got := progressRecheck(d, st, now.Time); got != 0 {
		t.Errorf("progressRecheck = %v, want 0", got)
	}
	done := rolloutStatus([]*appsv1.ReplicaSet{newRS}, newRS, d, now)
	if got := progressRecheck(d, done, now.Time); got != -1 {
		t.Errorf("progressRecheck of a complete rollout = %v, want -1", got)
	}
}
