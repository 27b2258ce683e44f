// Package multicast ships one image to many hosts at once over UDP
// multicast, UFTP-style in its phases and NORM-style in its repair: lost
// packets are not resent, fresh Reed-Solomon parity is, so one repair
// packet fills a different hole at every host that has one.
//
// It moves the chunks an [image.Manifest] names and knows nothing of ext2,
// mounts or releases. [Send] runs the sender's side of a session and
// returns a per-host [Report]; [Receive] runs one receiver's side and is
// what an agent calls (one session per call, conn reused across calls).
//
// # Session
//
//	sender                                          receivers
//	ANNOUNCE  ─multicast, every 200 ms, then 1 s──▶  lock onto the session
//	          ◀──unicast── REGISTER{need manifest}   (until the manifest is whole)
//	MANIFEST  ─multicast, at most every 100 ms────▶  assemble, check digest,
//	                                                 verify signature vs trusted keys
//	                                                 reflink/copy chunks held locally
//	          ◀──unicast── REGISTER{held chunks}     (untrusted: refuse, wait for another)
//	REGISTER  ─unicast echo = acknowledged────────▶
//	          … closed group: all listed hosts registered, or --wait elapsed;
//	            open group: --min-hosts registered, or --wait elapsed
//	DATA      ─multicast, paced────────────────────▶ keep symbols, decode chunk,
//	          (chunks some registered host lacks,     verify SHA-256, pwrite
//	          + proactive REPAIR per block, sized
//	          from STATUS{probe} answers)
//	STATUS    ─multicast ×2, end of round──────────▶
//	          ◀──unicast── NACK × ≤16                per block: count missing
//	REPAIR    ─multicast: per block, the max count asked, fresh parity indices
//	          … rounds repeat until every host completed or was dropped
//	          ◀──unicast── COMPLETE{staged}          the last chunk verified, image staged
//	COMPLETE  ─unicast echo = acknowledged────────▶
//	ABORT     ─multicast when the sender gives up─▶  discard partial files
//
// Each non-zero chunk is compressed with zstd on its own, once, when the
// image is built (the [ChunkSource], an image.Pack: the sender compresses
// and hashes nothing), and cut into symbols of the announced size (1408 bytes by default, the last one
// zero-padded); a chunk's symbols are spread evenly over FEC blocks of at
// most the announced count: 64 in a small group, coded over GF(2^8); in a
// group of more than 64 hosts (the hosts listed, or MinHosts, as the
// session starts; with symbols a multiple of 64 bytes) a whole chunk (up
// to 1,024 symbols), coded
// with Leopard GF(2^16), because a block's repair is the most any host
// lacks in it and that shrinks, as a share, with the block (fec.go,
// wire.Shards). All-zero chunks are never sent: receivers
// leave them as holes. A receiver that has no symbol of a chunk cannot know
// its block layout and asks for the whole chunk; the sender resends it once
// however many hosts ask. A chunk that fails its check is forgotten and so
// asked for whole again.
//
// # Reuse
//
// A receiver given [ReceiveOptions].Local (an index of the chunks it holds
// in images it keeps and vouches for, by SHA-256) fills its partial image
// from it as soon as it accepts a manifest, in runs of consecutive chunks:
// one FICLONERANGE per run where the filesystem shares extents (XFS,
// btrfs: no data is copied), else one copy_file_range. The chunks are not
// read back: they are trusted by the verified manifests of the images
// they come from, which the agent scrubs in the background. Its REGISTER
// lists the chunks it holds as ranges (all-zero chunks
// count as held, joining runs; a set more scattered than wire.MaxRegisterRanges
// goes as a bitmap of the image's chunks, exactly, when the image has at
// most wire.MaxRegisterBitmap chunks, else as its largest runs, so a host may
// be sent a chunk it holds but never denied one it lacks). When registration closes, the sender
// leaves out of the first pass every chunk each registered member holds
// (in a closed group, hosts not on the list decide nothing); a
// host holding nothing gets everything in the same pass, and one that
// joins later asks for what it lacks as whole chunks. A host that holds
// every chunk registers, verifies and completes without any data.
//
// # Deltas
//
// A sender given [SendOptions].BaseID (the hosts' previous release, which
// the pack's delta frames are against) names that release in ANNOUNCE; a
// receiver whose [ReceiveOptions].BaseImage finds it says so in REGISTER.
// When registration closes and every registered member holds the base,
// each chunk to send that has a delta frame (made at build: the 4 KiB
// blocks in which it differs from the base chunk at that index, see
// image's delta.go) goes as that frame, its symbols flagged delta. A
// group with any member lacking the base gets plain chunks only. A receiver
// decodes a delta against its own base image's chunk and checks the result
// against the manifest like any chunk: the base is never trusted. Where
// the image's filesystem shares extents (XFS, btrfs) a verified delta
// chunk is written as its base chunk shared by reflink plus the 4 KiB
// blocks that differ, so a hotfix writes what it changed; the base
// chunks a host lacks are read ahead when the session opens. A delta
// that fails (a corrupt base) is forgotten and not taken again; the host
// asks for the chunk whole, and a chunk asked for whole after the first
// pass is sent plain from then on, so the host gets it. A host that joins
// late without the base ignores delta symbols and asks for those chunks
// whole the same way: it completes in the same session, at the cost of
// plain resends. A host restarted mid-session does likewise if it no
// longer finds the base.
//
// # Joining
//
// A receiver tries the first session announced (or the one it was told
// to join), fetches its manifest and checks it against the announced
// digest and its trusted keys before registering. A session whose manifest
// is untrusted, corrupt or does not arrive within a second is refused and
// remembered, and the receiver waits for another: a forged announce can
// delay a receiver but not capture it (an ABORT of a session not yet
// joined is such a refusal, not the end of Receive). A receiver that hears a session
// mid-transfer (late, or restarted) asks its sender for the announce and
// manifest at once instead of waiting for the next periodic ANNOUNCE.
//
// # Large groups
//
// With more than 64 members still receiving, rounds are quiet (quiet.go):
// a host that lacks nothing stays silent but for a heartbeat every 5 s, a
// probe is answered by a random 64 of the hosts, a host that lacks
// something answers after a NORM-style truncated exponential backoff, and
// the sender multicasts signed summaries of what the round's NACKs asked,
// which silence the hosts they cover. Proactive parity then follows the
// probes' 90th percentile of loss. The feedback a round brings stays near
// a hundred packets however large the group (BenchmarkScale). A host
// losing more than 10% answers a probe at twice the sample's share, so
// the rate hears a slow host among thousands. Blocks are whole chunks
// there (fec.go): a block's repair is the most any host lacks in it.
//
// # Rate
//
// [SendOptions].Rate is a cap. Within it the first pass follows the
// slowest host (ratectl.go): each loss probe (every 250 ms) closes an
// interval, and what got through to the worst host (what was sent times
// one minus its loss) sets the pace: the best of the last eight intervals,
// scaled back by their least loss, the random loss a path shows at any
// rate (so a few percent of it costs nothing) while a slower link's loss
// falls away whenever the pace drops below it. A gain cycle (1.25, 0.85,
// then 1) finds capacity that appears and drains the queue it builds; an
// interval not probing upward (gain 1 or the drain) losing 20% resets
// the estimate (perhaps a path got slower): the pace halves at most and
// doubles back while the hosts keep up, so one bad interval (a
// descheduled receiver) costs about one interval. Intervals the sender itself held back (it sent under 80% of
// its pace) do not lower it, and without SlowStart the cap counts as a
// delivery seen until intervals at the pace age it out. With
// [SendOptions].SlowStart the first pass starts at an eighth of the cap
// and doubles each interval while every host keeps up. A host measures
// its loss between the sender's signed STATUS packets (their sequence
// numbers mark where the sender's counter stood): symbols carry no tag,
// so a forged one can add no loss. Proactive parity is sized only from
// intervals that sent no more than the hosts were known to take. The
// repair rounds keep the pace the first pass ended at ([Report].Rate),
// backing off on heavy loss, never below an eighth of it.
//
// # Unicast path
//
// Many networks carry no multicast. A sender given a TCP listener
// ([SendOptions].Unicast) names its port in every ANNOUNCE, and after
// 600 ms of registration sends the ANNOUNCE by unicast to each listed
// host that has not registered and whose address it knows
// ([SendOptions].HostAddrs). A receiver that gets it (sequence 0) for a
// session it has heard nothing of by multicast dials the port and runs the
// same session over that one connection: the same packets, each framed by
// a u16 length, with the same signatures and MACs, checked against the
// same signed manifest ([Result].Unicast says so). The sender pushes the
// chunks the host lacks as data symbols only (TCP loses nothing), as
// deltas when it holds the base, from a writer per connection that reads
// the pack itself; when the queue is empty it asks STATUS over the stream
// and re-pushes, plain, whatever the host still lacks. Such a host decides
// nothing for the multicast group and is not waited on by the repair
// rounds; it is dropped when its connection closes before it completes.
// The report gives each host's [HostReport].Path and what its connection
// carried. Bounds: 512 connections, a connection that registers
// no host within 10 s is closed, control packets queued per connection
// are capped (dropped beyond, as UDP would).
//
// # Relays
//
// A subnet behind a router that carries no multicast would otherwise take
// one unicast copy per host. A host named in [SendOptions].Relays that
// runs [Relay] (receiver run --relay) is sent the unicast ANNOUNCE at
// once, takes the session over the unicast path (one copy), and asks in
// its REGISTER to relay; the acknowledgement carries a grant signed by the
// release key, naming the session, the release, the descriptor, the layout
// and the relay's host key. The relay then runs the same session on its
// own subnet: the sender's descriptor and frames (cut through chunk by
// chunk from a frame store as each verifies), its own session keys, its
// own repair rounds, its ANNOUNCE signed by its host key with the grant
// in it. Hosts there follow it only with a grant that names what the
// ANNOUNCE announces, verify every chunk against the signed manifest, and
// sign their COMPLETE with their host keys; the relay forwards their
// REGISTER, COMPLETE and REFUSE to the sender as they came, reports them
// in RELAY-STATUS (their own addresses, for commands), and holds its own
// COMPLETE until its subnet's session ends. The sender waits for relayed
// hosts but asks them nothing: [HostReport].Path is PathRelay and Via the
// relay. Other listed hosts get their unicast ANNOUNCE relayGrace (2 s)
// later than without relays, so the relay is up first. A host whose relay
// verifies nothing for relayStall (60 s), junk or silence, gives that
// relay up for the session and takes the unicast path, which the sender
// offers relayed hosts every 5 s. Slice 1: plain sessions only (a sealed
// one is not relayed: the relay takes part as a host), no deltas through a
// relay, no relay chaining.
//
// # Liveness
//
// A host that leaves STATUS requests unanswered for HostTimeout is dropped
// and reported; a listed host that never registers is reported missing. A
// receiver that hears nothing of its session for SenderTimeout (longer than
// HostTimeout) discards its partial file. A receiver restarted mid-session
// registers again, gets the chunks it lacks, and resumes a partial file
// left by a killed predecessor (Out.<release>.partial) after re-verifying
// its chunks.
//
// # Logging
//
// Each side logs to the *slog.Logger of its options (nil: nowhere), in
// records with a constant message and attributes (session, host, addr,
// err, ...): at Warn what an operator must see (a host refusing or refused,
// a host dropped, a session refused, the unicast path taken), at Debug the
// detail (hosts registering and completing, each repair round). Nothing is
// logged per packet on the happy path.
//
// # Trust
//
// What a receiver writes is bound to the signed manifest: every received
// chunk's SHA-256 is checked before it is written (reused chunks come from
// images verified before), and the manifest names the image by a digest
// over those chunk hashes, so the whole image needs no pass of its own.
// Every control packet is authenticated (auth.go): ANNOUNCE by the release
// key, or a relay's by its host key under a grant the release key signed
// for that session; STATUS and ABORT by the session key the ANNOUNCE
// names; REGISTER, REFUSE and a relayed host's COMPLETE by the host's own
// key; NACK, COMPLETE, RELAY-STATUS and the acknowledgements by per-host
// MACs. So a relay can delay its subnet (stall, send junk, drop what it
// should forward, abort its own session, misreport in RELAY-STATUS where
// its hosts are or that they are gone), never make a host write a byte the
// manifest does not name, relay another session or release, or forge a
// host's REGISTER, COMPLETE or REFUSE. docs/SECURITY.md has the threat
// model.
//
// # Bounds
//
// Every length and count read from the network is checked against a named
// limit (wire.MaxHostID, wire.MaxNackBlocks, wire.MaxManifestSize, ...); parsers reject
// truncated packets and trailing bytes. Sockets are read by one goroutine
// into a bounded queue that drops on overflow; one goroutine owns each
// session's state; chunk decoding (Reed-Solomon, zstd with bounded window
// and output, SHA-256, pwrite) runs on up to four decoder goroutines fed by
// the loop, so the loop keeps answering the sender. Receiver memory is the
// decoders' buffers (about three chunks each, six once deltas arrive: the
// base chunk, the delta's dictionary and changed blocks; a delta's zstd
// window is capped at twice the chunk size), ~100 bytes
// per FEC block of chunks begun but not finished, and the symbols of those
// chunks: in memory up to a budget (24 MiB), beyond it in a sparse spool
// file until their chunk decodes, when the spool range is punched out.
// With no loss a byte is written once, decoded, into the image.
//
// # Code
//
// One goroutine owns each side's state (session.go serves it). The sender
// (sender.go; packets from hosts in sendhosts.go) keeps its hosts in a
// hostTable (hosttable.go), which answers what the group as a whole needs:
// who is live, what some host still lacks, who went silent. A receiver
// (receiver.go, recvjoin.go, recvsetup.go) is in one recvPhase at a time:
//
//	seeking → fetching → registering → receiving → done
//	          (refused: back to seeking)   └→ verified ┘ (every chunk local)
//
// and changes it only in receiver.on, by the table in recvphase.go. The
// packet codec is the internal package wire: nothing here builds or reads
// bytes of a packet by hand. Relays (relay.go) join the two: a relay's
// receiver (recvrelay.go) and its subnet's sender (relaydown.go) share a
// relayLink (relaylink.go) and a frame store (relayframes.go); the
// sender's side of relays is sendrelay.go, a relayed host's recvrelayed.go.
//
// # Wire format
//
// The codec is the internal package wire (multicast/internal/wire): one
// struct per message below, each with AppendBinary and a parser, one Parse
// that dispatches on the type, and the golden, truncation and fuzz tests
// that lock these bytes. Nothing outside this package speaks it but
// through Send and Receive (and AppendProbe, for doctor).
//
// All integers are big-endian. Every packet starts with the header:
//
//	 0               1               2               3
//	 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//	+---------------+---------------+---------------+---------------+
//	|                      magic "LCMC"                             |
//	+---------------+---------------+---------------+---------------+
//	|  version (5)  |     type      |  flags (0, 1 signed, 2 MAC)   |
//	+---------------+---------------+---------------+---------------+
//	|                          session id                           |
//	+---------------+---------------+---------------+---------------+
//	|             sequence (sender's multicast; 0 for unicast)      |
//	+---------------+---------------+---------------+---------------+
//
// Types (values are on the wire — only append): 1 ANNOUNCE, 2 REGISTER,
// 3 MANIFEST, 4 DATA, 5 STATUS, 6 NACK, 7 REPAIR, 8 COMPLETE, 9 ABORT,
// 10 REFUSE, 11 RELAY-STATUS. Flags 1: the packet ends with an ed25519 signature (64 bytes)
// over every byte before it; flags 2: with HMAC-SHA256 truncated to 16
// bytes, under a per-host session key (auth.go says which packet carries
// which, under which key). The header and REFUSE keep their layout in
// every version from 3 on.
// Bodies ("str8" is a u8 length then that many bytes):
//
//	ANNOUNCE  (sender → group)
//	  0 release id [8]       8 manifest SHA-256 [32]   40 manifest size u32
//	 44 image size u64      52 chunk size u32         56 chunk count u32
//	 60 symbol size u16     62 block symbols u16      64 flags u8 (1: closed group,
//	                                                   2: base, 4: sealed, 8: fetch port,
//	                                                   16: relayed)
//	 65 rate bit/s u64      73 hosts total u16        75 first host u16
//	 77 host count u8 (≤16) 78 host ids: str8 each (a page of the closed group)
//	  then, with flag 2 (base): base release id [8] (not all zero)
//	  then, with flag 8 (unicast path): TCP fetch port u16 (not 0)
//	  then, with flag 16 (a relay's): grant length u16 | grant (below);
//	  no host ids then, not closed
//	  then signed at (unix ms) u64 | release key [32] | session key [32]
//	  | session X25519 key [32]; signed by the release key (with flag 16:
//	  by the relay's host key the grant names)
//
//	GRANT  (in a relayed ANNOUNCE, and in the REGISTER acknowledgement)
//	  0 "LCRG"  4 version u8  5 session u32  9 release id [8]
//	 17 manifest SHA-256 [32]  49 manifest size u32  53 image size u64
//	 61 chunk size u32  65 symbol size u16  67 block symbols u16
//	 69 flags u8 (1: sealed, 2: base) | with flag 2: base release id [8]
//	  | issued (unix ms) u64 | expires (unix ms) u64 | relay host id str8
//	  | relay host key [32] | upstream session X25519 key [32]
//	  | release key [32] | signature [64] by the release key over all before
//
//	REGISTER  (host → sender; echoed back as the acknowledgement)
//	  host id str8 | flags u8 (1: need manifest, 2: holds the base, 4: bitmap,
//	  8: wrapped key, 16: asks to relay, 32: grant)
//	  | signed at (unix ms) u64 | host key [32] | host X25519 key [32]
//	  | with flag 8 (acknowledgement): wrapped content key [48]
//	  | with flag 32 (acknowledgement): grant length u16 | grant (then no
//	    held chunks)
//	  | range count u16 (≤150)
//	  | ranges, ascending and disjoint: first chunk u32, count u32
//	    (chunks already held; empty with need manifest)
//	  or, with flag 4: bit count u32 (≤9,600) | bitmap, bit i = chunk i held
//
//	MANIFEST  (sender → group): fragments of the session descriptor
//	  0 offset u32   4 total u32 (≤8 MiB)   8 length u16   10 bytes
//	  descriptor: manifest length u32 | manifest | per chunk: plain frame
//	  length u32, delta frame length u32 (its SHA-256 is in the ANNOUNCE)
//
//	DATA, REPAIR  (sender → group)
//	  0 chunk u32   4 compressed length u32   8 block u16   10 index u16
//	 12 flags u8     13 payload length u16    15 payload
//	  index < the block's data count k: a data symbol; above: parity shard
//	  index, below wire.Shards(k)
//	  flags 1: delta (the chunk's bytes are image's delta frame against
//	  the base chunk: the changed 4 KiB blocks, compressed)
//
//	STATUS  (sender → group)
//	  0 round u32   4 flags u8 (1: loss probe during the first pass;
//	                            hosts answer with one NACK listing nothing;
//	                            2: quiet round; 4: summary)
//	  then, with flag 2: hosts u16 (members still receiving)
//	  then, with flag 4: range count u8 (≤16) | ranges: first chunk u32,
//	  count u32 | block count u16 (≤150) | blocks: chunk u32, block u16,
//	  missing u16 (what the round's NACKs asked so far)
//
//	NACK  (host → sender; ≤16 per round)
//	  host id str8 | round u32 | loss ‰ u16 | part u8 | parts u8
//	  | range count u8 (≤16) | ranges: first chunk u32, count u32 (nothing held)
//	  | block count u16 (≤150) | blocks: chunk u32, block u16, missing u16
//
//	COMPLETE  (host → sender; echoed back as the acknowledgement)
//	  host id str8 | status u8 (0 ok, 1 failed, 2 staged, 3 staging failed)
//	  | reason str8 (≤200) | stage time ms u32
//	  (MAC'd; in a relayed session signed by the host key, and forwarded
//	  by the relay to the sender as it is)
//
//	ABORT  (sender → group; signed by the session key, as STATUS is)
//	  reason str8 (≤200)
//
//	over the TCP fetch port, each packet is preceded by its length u16
//	(1 to MaxPacket); the packets are those above, sequence 0
//
//	REFUSE  (host → sender; signed by the host key it carries)
//	  host id str8 | host key [32] | code u8 (1 other, 2 no-space,
//	  3 untrusted-key, 4 version, 5 busy, 6 older-than-current)
//	  | detail str8 (≤200)
//
//	RELAY-STATUS  (relay → sender; MAC'd under the relay's own MAC key)
//	  relay id str8 | seq u32 | down bytes u64 | down packets u64
//	  | rounds u32 | count u8 (≤8) | per host: host id str8, state u8
//	  (1 receiving, 2 complete, 3 failed, 4 dropped), address [16]
//	  (IPv4-mapped; all zero: unknown), port u16, reason str8 (≤64)
package multicast
