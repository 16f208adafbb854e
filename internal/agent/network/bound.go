package network

import (
	"bufio"
	"encoding/hex"
	"net/netip"
	"os"
	"strings"
)

// boundLoopbackAddrs returns the IPv4 addresses local TCP and UDP sockets are
// bound to, from /proc/net/{tcp,udp} (empty where those cannot be read).
func boundLoopbackAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/udp"} {
		parseProcNet(f, out)
	}
	return out
}

func parseProcNet(path string, out map[netip.Addr]bool) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if a, ok := parseHexAddr(fields[1]); ok {
			out[a] = true
		}
	}
}

// parseHexAddr reads "0202F47F:0BB8": an IPv4 address in host byte order
// (little-endian on the machines berth runs on) and a port.
func parseHexAddr(s string) (netip.Addr, bool) {
	hexIP, _, ok := strings.Cut(s, ":")
	if !ok || len(hexIP) != 8 {
		return netip.Addr{}, false
	}
	b, err := hex.DecodeString(hexIP)
	if err != nil {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}), true
}
