package lease

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestValidate(t *testing.T) {
	ok := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1"), LeaseDurationSeconds: ptr.To[int32](40), LeaseTransitions: ptr.To[int32](0)}}
	if errs := (strategy{}).Validate(context.Background(), ok); len(errs) != 0 {
		t.Errorf("valid lease: %v", errs)
	}
	bad := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](0), LeaseTransitions: ptr.To[int32](-1)}}
	errs := (strategy{}).ValidateUpdate(context.Background(), bad, ok)
	if len(errs) != 2 || errs[0].Field != "spec.leaseDurationSeconds" || errs[1].Field != "spec.leaseTransitions" ||
		!strings.Contains(errs[0].Error(), "must be greater than 0") {
		t.Errorf("errors %v", errs)
	}
}

func TestRow(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", CreationTimestamp: metav1.NewTime(now.Add(-90 * time.Second))},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1")},
	}
	s := strategy{}
	row := s.Row(l, now)
	if len(row) != len(s.Columns()) || row[0] != "node-1" || row[1] != "node-1" || row[2] != "90s" {
		t.Errorf("row %v for columns %v", row, s.Columns())
	}
	if row := s.Row(&coordinationv1.Lease{}, now); row[1] != "" {
		t.Errorf("no holder: %v", row)
	}
}
