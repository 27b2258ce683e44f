package wire

import "bytes"

// A doctor probe is one datagram `sender doctor` multicasts on the group's
// data port, so each agent can say (in its STATUS reply) that it hears
// that port, not only the control port next to it: a firewall that lets
// commands in but drops the data would otherwise show only at the next
// deploy. It is not a session packet (its magic differs) and changes
// nothing; a receiver hands its nonce to ReceiveOptions.Probed.
//
//	"LCDP" | version u8 (1) | nonce [16]
var probeMagic = []byte("LCDP\x01")

// ProbeLen is a probe's length.
const ProbeLen = 5 + 16

// AppendProbe appends a probe carrying nonce.
func AppendProbe(b []byte, nonce [16]byte) []byte {
	return append(append(b, probeMagic...), nonce[:]...)
}

// ParseProbe returns a probe's nonce; ok is false for anything else.
func ParseProbe(b []byte) (nonce [16]byte, ok bool) {
	if len(b) != ProbeLen || !bytes.HasPrefix(b, probeMagic) {
		return nonce, false
	}
	copy(nonce[:], b[len(probeMagic):])
	return nonce, true
}
