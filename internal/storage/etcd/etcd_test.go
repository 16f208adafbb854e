package etcd

import (
	"context"
	"testing"

	"github.com/berth-project/berth/internal/storage/storagetest"
)

func TestEmbeddedConformance(t *testing.T) {
	ctx := context.Background()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := New(e.Client(), nil)
	storagetest.Run(t, s)
	storagetest.RunCompaction(t, s, func(rev int64) error {
		_, err := e.Client().Compact(ctx, rev)
		return err
	})
}
