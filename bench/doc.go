// Command bench is berth's benchmark and reliability harness. It starts
// real `berth server` processes on the loopback pod network, drives them
// with client-go, kubectl and its own load generator, measures each figure
// side by side with a peer in the same run (a standalone etcd, the direct
// pod address, HAProxy, kubectl port-forward, the process's own start, the
// 10-Service figure), and writes a dated Markdown report with charts:
//
//	go run ./bench -out bench/results          # the full run (about 25 minutes)
//	go run ./bench -smoke -out $(mktemp -d)    # every benchmark at tiny sizes (CI)
//	go run ./bench -only datapath,scale        # a subset
//
// `bench backend` is the backend process the data-path benchmarks run
// (see package backend). Every load loop is bounded in count and time,
// every address is in 127.0.0.0/8, and every process started is killed
// at the end (the bench is a child subreaper, so orphans come back to it).
package main
