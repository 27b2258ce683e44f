// Package control is the signed control plane between the sender and the
// agents: the commands that switch releases (ACTIVATE, ROLLBACK) or ask for
// a host's state (STATUS), and the agents' replies. It is transport
// agnostic: messages are bytes in, bytes out; the caller moves them (UDP
// multicast for commands, unicast for replies).
//
// # Wire layout
//
// All integers are big-endian. A name (group, host, release id) is a length
// u8 and 0..MaxName printable ASCII bytes without spaces; a text (error,
// version) is a length u16 and at most MaxText bytes of UTF-8. A release
// name is a release id (image.ID) in its 16 lowercase hex digits, or empty
// for none where none is allowed (the Go value is then the zero ID); any
// other name there, the zero id's digits included, is ErrMalformed naming
// the field.
//
//	every message
//	 0  magic "LCCP" [4]   4  version u8   5  type u8   6  flags u16 (0)
//	 8  deploy id u64
//
//	commands: ACTIVATE, ROLLBACK, STATUS
//	16  issued i64 (Unix milliseconds)      24  nonce [16]
//	40  group name
//	    target count u16 (0: every host of the group), then that many host names
//	    ACTIVATE: release name        ROLLBACK: release name (empty: previous)
//	    STATUS: nothing
//	    scheme u8: 0 unsigned, 1 ed25519
//	    ed25519: public key [32], signature [64] over every byte before it
//
//	REPLY (agent -> sender, unsigned)
//	16  nonce [16] of the command answered   32  command type u8
//	33  outcome u8 (1 ok, 2 failed, 3 refused)
//	34  host name, current release name, error text (empty iff ok)
//	    STATUS answered ok: previous name, free bytes u64,
//	    staged count u8 + names, agent version text, last error text,
//	    last refusal text, then, when any is set (agents before them
//	    omit them): doctor probe nonce [16], MTU u16, problems text
//	  then (every reply) the host's public key [32] and its ed25519
//	  signature [64] over everything before it (SignReply)
//
//	POINTER (sender -> agents, and verbatim agent -> agent); deploy id: seq
//	16  issued i64 (Unix ms)   24  group name, release name,
//	    manifest digest [32] (zero: not known to the sender),
//	    hosts u32, kind u8 (0 deploy, 1 rollback), scheme u8 (1),
//	    public key [32], signature [64] over
//	    every byte before it
//	POINTER? (agent -> group, unsigned): group name, have u64 (its seq)
//	POINTER-ANSWER (agent or sender serve -> asker, unsigned): flags u8
//	    (bit 0: serves the release to peers, bit 1: a source of last
//	    resort), pointer length u16, the POINTER
//	HOST-CERT (sender -> agents): issued u64, expires u64 (Unix ms), group
//	    name, host name, host key [32], scheme u8 (1), release public key
//	    [32], signature [64] over every byte before it (HostCert)
//
// # Trust
//
// A [Verifier] accepts a command only when it is for this host and group,
// signed by a trusted ed25519 key, issued within [MaxClockSkew] of the
// agent's clock, and its nonce has not been seen; the nonces of accepted
// commands are remembered until they are too old to pass the time check,
// in a cache of bounded size. The agent's handler (package agent) applies
// verified commands to its release store and answers every command
// addressed to the host, refused or not, so the sender can report why; it
// re-sends its earlier reply to a retransmitted command instead of
// applying it again. This package knows nothing of the store: the sender
// links it without any of the receiver's side. [Addr] gives the control
// address that goes with a data group (port+1).
//
// A sender retransmits a command unanswered by some hosts as the same
// bytes (same nonce), never re-signed: each agent applies a command at most
// once. A ROLLBACK that names its target is idempotent even when re-issued
// with a new nonce; one without a target is not (it flips back again).
//
// On the sender's side a [Tally] collects the replies to one command and
// names the hosts still missing.
//
// # The fleet pointer
//
// A [Pointer] says, signed by a release key, which release a group
// serves; its sequence number only grows. The sender multicasts one at the
// end of each deploy that switched hosts and of each rollback; agents keep
// the newest (package agent), answer a [PointerQuery] with it, and a host
// that missed a deploy catches up from its peers. A pointer is taken only
// when newer than the one held, so a replay changes nothing; it is acted
// on only when issued after the last command the host obeyed, so a deploy
// in flight always wins over the pointer of the one before. Queries and
// answers are unsigned: the pointer inside proves itself, and the "serves"
// hint is checked chunk by chunk against the signed manifest.
//
// Replies are signed by the agent's host key (version 2): the sender's
// commander counts a reply only when the key is the one it pins for the
// host (package hostkey), so made-up hosts cannot steer its report or a
// rollback's target.
package control
