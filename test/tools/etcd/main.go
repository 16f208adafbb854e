// Command etcd is the etcd server built from the same etcd module berth
// embeds, so tests can start a separate etcd process for --etcd-servers
// without downloading anything.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
