package control

import "net"

// PortOffset places the control socket next to the data port: commands go
// to the group's address at port+1, so one ADDR:PORT configures both and
// firewall rules stay a pair.
const PortOffset = 1

// Addr returns the control address that goes with a data group.
func Addr(group *net.UDPAddr) *net.UDPAddr {
	return &net.UDPAddr{IP: group.IP, Port: group.Port + PortOffset}
}
