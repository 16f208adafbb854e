package network

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// boundLoopbackAddrs returns the IPv4 addresses that listening TCP sockets
// and UDP sockets on this host are bound to. It asks the kernel through
// sock_diag, filtered to those states, because /proc/net/tcp lists every
// socket (a busy host's thousands of TIME_WAIT ones took 40 ms to read);
// /proc is the fallback where sock_diag is unavailable.
func boundLoopbackAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	tcpErr := sockDiag(unix.IPPROTO_TCP, 1<<tcpListen, out)
	udpErr := sockDiag(unix.IPPROTO_UDP, 0xfff, out)
	if tcpErr != nil {
		parseProcNet("/proc/net/tcp", out)
	}
	if udpErr != nil {
		parseProcNet("/proc/net/udp", out)
	}
	return out
}

const tcpListen = 10 // TCP_LISTEN in the kernel's state numbering

// sockDiag dumps IPv4 sockets of protocol in the given states (a bit mask
// of state numbers) and adds their local addresses to out.
func sockDiag(protocol uint8, states uint32, out map[netip.Addr]bool) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	const hdrLen, reqLen = 16, 56
	req := make([]byte, hdrLen+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], 20) // SOCK_DIAG_BY_FAMILY
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1)
	req[hdrLen] = unix.AF_INET
	req[hdrLen+1] = protocol
	ne.PutUint32(req[hdrLen+4:], states)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				return unix.EINVAL
			}
			// inet_diag_msg: family, state, timer, retrans, then the
			// socket id: sport, dport (2 bytes each), src (16 bytes).
			if len(m.Data) >= 12 && m.Data[0] == unix.AF_INET {
				out[netip.AddrFrom4([4]byte(m.Data[8:12]))] = true
			}
		}
	}
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
