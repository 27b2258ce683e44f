// Package wire is the packet codec of loopcast's multicast sessions: the
// fixed [Header], one struct per message type ([Announce], [Register],
// [ManifestFrag], [Symbol] for DATA and REPAIR, [Status], [Nack],
// [Complete], [Abort], [Refuse], [RelayStatus]), the relay grant
// ([RelayGrant]) that ANNOUNCE and REGISTER may carry, the session descriptor that MANIFEST
// fragments carry, and the doctor probe. It is pure encoding: it keeps no
// state, opens no socket and checks no key; the sessions, and which packet
// carries which signature or MAC under which key, are package multicast's.
//
// Each message has AppendBinary(b []byte) ([]byte, error), which refuses
// what its peer would refuse, and a parser; [Parse] reads the header and
// dispatches on its [Type]. Type values and layouts are on the wire: only
// append. [AppendPacket] frames a message; [AppendTagged] frames it with
// the header flag and tag (an ed25519 signature or a truncated HMAC) that
// the caller's key makes, and a parsed [Header] gives the tag and the bytes
// it covers back (Auth, Tag, Covered) for the caller to check.
//
// Parsers read with golang.org/x/crypto/cryptobyte (fields.go). Every
// length and count read from the network is checked against a named limit
// (MaxHostID, MaxNackBlocks, MaxManifestSize, ...) as soon as it is read,
// before it sizes anything; parsers reject truncated packets and trailing
// bytes, and an error names the packet (type and sequence) and the field
// or bound it failed. Parsing a DATA packet allocates only its Symbol
// (BenchmarkParse).
// Byte slices in a parsed message (a DATA payload, a MANIFEST fragment)
// alias the packet. Errors read "multicast: ...": an operator meets them
// in multicast's logs, about multicast's packets.
//
// The layout of every packet is drawn in package multicast's doc, under
// "Wire format"; each message's own comment repeats its body at offsets.
// The golden table, truncation and fuzz tests (wire_test.go) lock the
// bytes: a change there is a protocol change and needs a Version bump.
package wire
