package multicast

import "github.com/loopcast/loopcast/multicast/internal/wire"

// AppendProbe appends a doctor probe carrying nonce: the datagram `sender
// doctor` multicasts on the group's data port, so each agent can say it
// hears that port (a receiver hands the nonce to ReceiveOptions.Probed).
// It is not a session packet and changes nothing; wire.AppendProbe has
// its layout.
func AppendProbe(b []byte, nonce [16]byte) []byte { return wire.AppendProbe(b, nonce) }
