package network

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
)

func TestParseHexAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"0202F47F:0BB8", "127.244.2.2", true},
		{"0100007F:1F90", "127.0.0.1", true},
		{"00000000:0016", "0.0.0.0", true},
		{"zz:0016", "", false},
		{"0100007F", "", false},
	} {
		got, ok := parseHexAddr(tc.in)
		if ok != tc.ok || (ok && got.String() != tc.want) {
			t.Errorf("parseHexAddr(%q) = %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBoundLoopbackAddrsSeesAListener(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/net/tcp")
	}
	ln, err := net.Listen("tcp", "127.244.99.7:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if !boundLoopbackAddrs()[netip.MustParseAddr("127.244.99.7")] {
		t.Fatal("a listener on 127.244.99.7 is not seen as in use")
	}
}

func TestLoopbackSkipsAddressInUse(t *testing.T) {
	// Another process (say another berth's pod) listens on the address
	// this network would hand out first.
	ln, err := net.Listen("tcp", "127.245.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n, err := New(Config{Mode: ModeLoopback, PodCIDR: "127.245.0.0/24", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	att, err := n.Setup(t.Context(), "uid-1", "default", "p")
	if err != nil {
		t.Fatal(err)
	}
	if att.IP.String() == "127.245.0.2" {
		t.Fatalf("handed out %s, which another socket is bound to", att.IP)
	}
}

func TestSockDiagSeesListenerAndUDP(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("sock_diag is Linux")
	}
	ln, err := net.Listen("tcp", "127.244.98.7:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	uc, err := net.ListenPacket("udp", "127.244.98.8:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	out := map[netip.Addr]bool{}
	if err := sockDiag(6, 1<<tcpListen, out); err != nil {
		t.Skipf("sock_diag unavailable here: %v", err)
	}
	if err := sockDiag(17, 0xfff, out); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"127.244.98.7", "127.244.98.8"} {
		if !out[netip.MustParseAddr(a)] {
			t.Errorf("%s not seen by sock_diag", a)
		}
	}
}
